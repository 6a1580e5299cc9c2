"""Loading and saving JARRN weights: official training checkpoints and the project's own safetensors format."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import torch

from jarrn_deploy.errors import InputError, OutputError
from jarrn_deploy.model.atomic import atomic_path, remove_stale_temp_files
from jarrn_deploy.model.contract import CONTRACT_VERSION
from jarrn_deploy.model.network import Jarrn, JarrnConfig

PROJECT_FORMAT = "jarrn-deploy"
HASH_KEY = "content_sha256"
"""Metadata key of :func:`content_hash` in the project's safetensors files."""
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "jarrn_small_default.safetensors"
_PREFIXES = ("_orig_mod.", "module.")
_BRANCHES = ("rgb_x_block", "sfmap_block")
_MAX_KEYS_IN_ERROR = 8


_CONFIG_KEYS = frozenset(JarrnConfig().to_dict())
# safetensors' own writers tag plain state dicts "pt"; anything else that is not ours is another project's file.
_PLAIN_FORMATS = frozenset({"pt"})


class CheckpointError(InputError):
    """A checkpoint file that cannot be read or does not hold JARRN weights (a ValueError, exit status 3)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist (also a FileNotFoundError, for callers that catch that)."""


def parse_recorded_config(raw: object, path: str | os.PathLike = "<checkpoint>") -> JarrnConfig:
    """The :class:`JarrnConfig` a file records (a dict, or its JSON text), checked key by key; :class:`CheckpointError`
    naming the file and the field otherwise."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise CheckpointError(f"{path}: the recorded config is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: the recorded config must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in _CONFIG_KEYS)
    if unknown:
        raise CheckpointError(f"{path}: the recorded config has unknown fields {unknown}; expected {sorted(_CONFIG_KEYS)}")
    widths = raw.get("widths")
    if not isinstance(widths, (list, tuple)) or not all(isinstance(w, int) and not isinstance(w, bool) for w in widths):
        raise CheckpointError(f"{path}: the recorded config needs 'widths', a list of 7 integers, got {widths!r}")
    for key in _CONFIG_KEYS - {"widths"}:
        if key in raw and not isinstance(raw[key], str):
            raise CheckpointError(f"{path}: the recorded config field {key!r} must be a string, got {raw[key]!r}")
    try:
        return JarrnConfig.from_dict(raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path}: the recorded config is not a valid JARRN config ({exc})") from None


def check_contract_version(recorded: object, path: str | os.PathLike = "<checkpoint>") -> None:
    """A file written for another version of the tensor contract would compute something else: refuse it."""
    if recorded is not None and str(recorded) != CONTRACT_VERSION:
        raise CheckpointError(
            f"{path}: written for tensor contract version {recorded!r}, this code implements version "
            f"{CONTRACT_VERSION!r}; re-export the weights with this version (jarrn_deploy.model.checkpoint.save_model)"
        )


def check_tensor_types(state_dict: Mapping[str, object], path: str | os.PathLike = "<checkpoint>") -> None:
    """Every entry is a floating-point tensor (a float, a list or int weights would load and give garbage)."""
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, expected a tensor")
        if not value.is_floating_point():
            raise CheckpointError(f"{path}: tensor {key!r} has dtype {str(value.dtype).replace('torch.', '')}; "
                                  "JARRN weights are floating point (float32, float16 or bfloat16)")


def check_tensors(state_dict: Mapping[str, object], path: str | os.PathLike = "<checkpoint>") -> None:
    """Every entry is a floating-point tensor with finite values (int weights or NaN would load and give garbage)."""
    check_tensor_types(state_dict, path)
    for key, value in state_dict.items():
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            bad = int(finite.numel() - int(finite.sum()))
            raise CheckpointError(f"{path}: tensor {key!r} holds {bad} NaN or infinite value(s) of {value.numel()}; "
                                  "the weights are corrupt (a diverged training run?)")


def _reason(exc: BaseException, limit: int = 200) -> str:
    """One line for the user from a loader's exception. torch's weights-only refusal spans many lines, most of them
    advice to set ``weights_only=False`` (which would run the file's code): only the line saying what was found
    (e.g. "Trying to load unsupported GLOBAL posix.system ...") is kept."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = None
    if lines and ("weights only load failed" in lines[0].lower() or any(
            line.endswith("WeightsUnpickler error:") for line in lines)):
        found = [line for i, line in enumerate(lines) if "global" in line.lower() or (
            i and lines[i - 1].endswith("WeightsUnpickler error:"))]
        found = [line for line in found if "weights_only" not in line and not line.endswith("WeightsUnpickler error:")]
        text = ("it holds Python objects that safe loading refuses and that were not run: "
                + (found[0] if found else "an object of a type that is not allowed"))
    if text is None:
        text = lines[0] if lines else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def strip_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``_orig_mod.`` (torch.compile) and ``module.`` (DDP) prefixes, in any combination."""
    cleaned = {}
    for key, value in state_dict.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        cleaned[key] = value
    return cleaned


def infer_widths(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike = "<state dict>") -> tuple[int, ...]:
    """The U-Net channel list (innermost first) from the visual branch's convolution shapes."""
    try:
        outer = int(state_dict["rgb_x_block.0.weight"].shape[0])
        mids = []
        prefix = "rgb_x_block.2"
        for _ in range(6):
            mids.append(int(state_dict[f"{prefix}.block.0.weight"].shape[0]))
            prefix += ".block.2"
    except KeyError as exc:
        raise CheckpointError(
            f"{path}: not a JARRN state dict (missing key {exc.args[0]!r}; "
            f"first keys found: {sorted(state_dict)[:_MAX_KEYS_IN_ERROR]})"
        ) from None
    return tuple(reversed(mids)) + (outer,)


def content_hash(tensors: Mapping[str, torch.Tensor], config_json: str, contract_version: str) -> str:
    """sha256 over the recorded config, the contract version and every tensor (name, dtype, shape, bytes), in name
    order: recorded in a project file's metadata, so an edited config or tensor is noticed when the file loads."""
    digest = hashlib.sha256(f"{config_json}\0{contract_version}\0".encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\0{str(tensor.dtype)}\0{list(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_content_hash(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str], path: str | os.PathLike) -> None:
    """:class:`CheckpointError` when the file records a content hash that its config and tensors no longer match."""
    recorded = metadata.get(HASH_KEY)
    if recorded is None:
        return  # written before the hash was recorded (the bundled model, older exports): nothing to compare
    actual = content_hash(state, metadata.get("config", ""), metadata.get("contract_version", ""))
    if actual != recorded:
        raise CheckpointError(f"{path}: its config or weights were changed after it was saved (content hash "
                              f"{actual[:12]}, recorded {recorded[:12]}); re-save it with jarrn_deploy.model.checkpoint.save_model "
                              "if the change is intended")


def is_safetensors(path: Path) -> bool:
    """Whether the file starts like safetensors (an 8-byte little-endian header length, then a JSON object), whatever
    its name: a PyTorch file starts with a zip ('PK') or pickle (0x80) signature instead."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8


def _read_file(path: Path) -> tuple[dict[str, torch.Tensor], JarrnConfig | None]:
    """State dict and, for project files, the recorded config (the format sniffed from the content, not the name)."""
    if path.suffix == ".safetensors" or is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: could not be read as safetensors ({_reason(exc)})") from None
        fmt = metadata.get("format")
        claims_project = "config" in metadata or "contract_version" in metadata
        if fmt is not None and fmt != PROJECT_FORMAT and (claims_project or fmt not in _PLAIN_FORMATS):
            raise CheckpointError(f"{path}: format tag {fmt!r} is not {PROJECT_FORMAT!r}; this file was written by "
                                  "another tool (convert it with jarrn_deploy.model.checkpoint.save_model)")
        check_contract_version(metadata.get("contract_version"), path)
        check_content_hash(state, metadata, path)
        config = parse_recorded_config(metadata["config"], path) if "config" in metadata else None
        return state, config
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files; all mean the same to the user
        raise CheckpointError(f"{path}: could not be read as a PyTorch checkpoint ({_reason(exc)})") from None
    if isinstance(payload, dict) and "network_state_dict" in payload:
        state = payload["network_state_dict"]
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: 'network_state_dict' is a {type(state).__name__}, expected a dict of tensors")
        check_contract_version(payload.get("contract_version"), path)
        recorded = payload.get("jarrn_config")
        return state, (parse_recorded_config(recorded, path) if recorded is not None else None)
    if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return payload, None
    raise CheckpointError(
        f"{path}: expected an official checkpoint (a dict with 'network_state_dict') or a bare state dict, "
        f"got {type(payload).__name__} with keys {sorted(payload)[:_MAX_KEYS_IN_ERROR] if isinstance(payload, dict) else '-'}"
    )


def build_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: JarrnConfig | None = None, path: str | os.PathLike = "<state dict>"
) -> Jarrn:
    """A :class:`Jarrn` holding ``state_dict`` (prefixes stripped), widths inferred unless ``config`` is given."""
    state = strip_prefixes(state_dict)
    check_tensor_types(state, path)
    if config is None:
        config = JarrnConfig(infer_widths(state, path))
    network = Jarrn(config)
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                more = f" (+{len(keys) - _MAX_KEYS_IN_ERROR} more)" if len(keys) > _MAX_KEYS_IN_ERROR else ""
                parts.append(f"{len(keys)} {label} keys: {keys[:_MAX_KEYS_IN_ERROR]}{more}")
        raise CheckpointError(f"{path}: not a JARRN checkpoint of widths {list(config.widths)}; " + "; ".join(parts))
    check_tensors(state, path)  # after the keys, so another architecture is reported as such
    network.load_state_dict({k: v.float() for k, v in state.items()})
    return network


def load_model(
    path: str | os.PathLike | None = None,
    *,
    prob_activation: str | None = None,
    depth_normalisation: str | None = None,
    device: str | torch.device = "cpu",
) -> Jarrn:
    """Load JARRN weights and return the network in eval mode.

    ``path``: an official checkpoint (``network_state_dict``, keys with or without ``_orig_mod.``/``module.``), a bare
    state dict, or the project's ``.safetensors`` file; ``None`` loads the bundled default model. Widths come from the
    tensor shapes; the probability activation and depth normalisation come from the file's recorded config
    (project files) or default to the official softmax-over-height and 'max' unless overridden here.

    Everything is checked before it is trusted: the recorded config and contract version, floating-point dtypes and
    finite values; a file that fails raises :class:`CheckpointError` (a ValueError) naming the file and the fault,
    a missing file :class:`CheckpointNotFoundError` (also a FileNotFoundError), a CUDA ``device`` on a machine
    without one :class:`jarrn_deploy.errors.UnavailableError`.
    """
    from jarrn_deploy.devices import resolve_device

    device = resolve_device(device, name="device")
    if path is None:
        if not DEFAULT_CHECKPOINT.exists():
            raise CheckpointNotFoundError(
                f"no bundled default model at {DEFAULT_CHECKPOINT}; pass a checkpoint path or train one (model/train.py)"
            )
        path = DEFAULT_CHECKPOINT
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint: {path} is a folder, expected a .safetensors, .pt or .pth file")
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint: no such file {path}")
    state, config = _read_file(path)
    check_tensor_types(state, path)  # before the widths are read from the shapes: a float has no shape
    if config is None:
        config = JarrnConfig(infer_widths(strip_prefixes(state), path))
    overrides = {k: v for k, v in (("prob_activation", prob_activation), ("depth_normalisation", depth_normalisation)) if v}
    if overrides:
        try:
            config = JarrnConfig.from_dict({**config.to_dict(), **overrides})
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
    network = build_from_state_dict(state, config, path)
    network.source_path = str(path)
    return network.to(device).eval()


def read_training_checkpoint(path: str | os.PathLike) -> dict:
    """The payload of a ``jarrn_deploy.model.train`` ``last.pt``, checked: a dict with the network and optimizer state, the step
    and a valid recorded config (returned parsed as ``payload["jarrn_config"]``: a :class:`JarrnConfig`)."""
    path = Path(path)
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt or truncated files
        raise CheckpointError(f"{path}: could not be read as a training checkpoint ({_reason(exc)}); "
                              "delete it to start a new run") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a model.train checkpoint (a dict), got {type(payload).__name__}")
    missing = [k for k in ("network_state_dict", "optimizer_state_dict", "step", "jarrn_config") if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a model.train checkpoint (missing {missing}); delete it or use another --out")
    if not isinstance(payload["network_state_dict"], dict) or not isinstance(payload["optimizer_state_dict"], dict):
        raise CheckpointError(f"{path}: network_state_dict and optimizer_state_dict must be dicts")
    if isinstance(payload["step"], bool) or not isinstance(payload["step"], int) or payload["step"] < 0:
        raise CheckpointError(f"{path}: 'step' must be a non-negative integer, got {payload['step']!r}")
    check_contract_version(payload.get("contract_version"), path)
    payload = dict(payload)
    payload["jarrn_config"] = parse_recorded_config(payload["jarrn_config"], path)
    check_tensors(strip_prefixes(payload["network_state_dict"]), path)
    return payload


def save_model(network: Jarrn, path: str | os.PathLike, *, half: bool = False, extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Write the project's format: safetensors with the config and contract version in its metadata (atomic)."""
    from safetensors.torch import save_file

    path = Path(path)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in network.state_dict().items()}
    config_json = json.dumps(network.config.to_dict())
    metadata = {
        **(extra_metadata or {}),
        "format": PROJECT_FORMAT,
        "config": config_json,
        "contract_version": CONTRACT_VERSION,
        HASH_KEY: content_hash(tensors, config_json, CONTRACT_VERSION),
    }
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(path)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
    return path


def save_training_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """``torch.save`` through a temp file and rename, so an interrupted save never leaves a truncated file; temp files
    of earlier runs that were killed while saving are removed first. Training payloads (with ``network_state_dict``)
    record the contract version."""
    path = Path(path)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(path)
        with atomic_path(path) as tmp:
            if "network_state_dict" in payload:
                payload = {**payload, "contract_version": payload.get("contract_version", CONTRACT_VERSION)}
            torch.save(payload, tmp)
    return path


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A full disk or a read-only folder while saving becomes one OutputError line (still an OSError); the atomic
    writer has already removed its temp file, and the previous file at ``path`` is untouched."""
    from safetensors import SafetensorError

    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"{path}: could not be written ({exc.strerror or exc})") from None
    except (RuntimeError, SafetensorError) as exc:
        # torch.save reports a failed write as a RuntimeError ("file write failed", or on a full disk "unexpected pos
        # N vs M"), safetensors as a SafetensorError ("IoError ... StorageFull"): inside this block only writing runs
        raise OutputError(f"{path}: could not be written ({_reason(exc)}; is the disk full?)") from None
