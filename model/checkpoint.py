"""Loading and saving JARRN weights: official training checkpoints and the project's own safetensors format."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import torch

from model.atomic import atomic_path
from model.contract import CONTRACT_VERSION
from model.network import Jarrn, JarrnConfig

PROJECT_FORMAT = "jarrn-deploy"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "jarrn_small_default.safetensors"
_PREFIXES = ("_orig_mod.", "module.")
_BRANCHES = ("rgb_x_block", "sfmap_block")
_MAX_KEYS_IN_ERROR = 8


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not hold JARRN weights."""


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


def _read_file(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """State dict and, for project files, the recorded config."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: could not be read as safetensors ({exc})") from None
        config = json.loads(metadata["config"]) if "config" in metadata else None
        return state, config
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files; all mean the same to the user
        raise CheckpointError(f"{path}: could not be read as a PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if isinstance(payload, dict) and "network_state_dict" in payload:
        return payload["network_state_dict"], payload.get("jarrn_config")
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
    """
    if path is None:
        if not DEFAULT_CHECKPOINT.exists():
            raise FileNotFoundError(
                f"no bundled default model at {DEFAULT_CHECKPOINT}; pass a checkpoint path or train one (model/train.py)"
            )
        path = DEFAULT_CHECKPOINT
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no such file {path}")
    state, recorded = _read_file(path)
    config = JarrnConfig.from_dict(recorded) if recorded else JarrnConfig(infer_widths(strip_prefixes(state), path))
    overrides = {k: v for k, v in (("prob_activation", prob_activation), ("depth_normalisation", depth_normalisation)) if v}
    if overrides:
        config = JarrnConfig.from_dict({**config.to_dict(), **overrides})
    network = build_from_state_dict(state, config, path)
    network.source_path = str(path)
    return network.to(device).eval()


def save_model(network: Jarrn, path: str | os.PathLike, *, half: bool = False, extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Write the project's format: safetensors with the config and contract version in its metadata (atomic)."""
    from safetensors.torch import save_file

    path = Path(path)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in network.state_dict().items()}
    metadata = {
        "format": PROJECT_FORMAT,
        "config": json.dumps(network.config.to_dict()),
        "contract_version": CONTRACT_VERSION,
        **(extra_metadata or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def save_training_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """``torch.save`` through a temp file and rename, so an interrupted save never leaves a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path
