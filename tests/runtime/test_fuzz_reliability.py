"""Fuzzing so the reliability of issue 14 stays true: random bad arrays, corrupted checkpoints and graphs, and bad
command-line values must end in a result or in one of the documented errors, never in anything else.

The default run takes a fixed, small sample of each matrix (seeded, a few seconds in all); ``-m slow`` runs the full
matrices (a few minutes).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from jarrn_deploy.errors import JarrnError
from jarrn_deploy.model import CheckpointError, Jarrn, JarrnConfig, load_model, save_model
from jarrn_deploy.model.checkpoint import save_training_checkpoint
from tests.reliability_support import GOOD_METADATA, contract_graph, nan_graph
from jarrn_deploy.runtime import DepthCompleter
from jarrn_deploy.runtime.backends import GraphError

from tests.support import TINY_WIDTHS  # noqa: E402

TINY = JarrnConfig(TINY_WIDTHS)
FAST_SAMPLE = 24
"""Cases of each matrix in the default run."""

# ---------------------------------------------------------------------------------------------------------------------
# arrays through the API

RGB_DTYPES = (np.uint8, np.float32, np.float64, np.float16, np.int32, np.uint16, bool)
SPARSE_DTYPES = (np.float32, np.float64, np.float16, np.uint16, np.int64)
SHAPES = ((16, 24), (1, 1), (0, 5), (3, 16, 24), (2, 16, 24), (16, 24, 1), (1, 1, 16, 24))
VALUES = ("zero", "typical", "nan", "inf", "negative", "huge", "just_above_one")
WRAPPERS = ("ndarray", "list", "masked", "fortran", "noncontiguous")
API_MATRIX = list(itertools.product(range(len(RGB_DTYPES)), range(len(SPARSE_DTYPES)), range(len(SHAPES)),
                                    range(len(VALUES)), range(len(WRAPPERS))))
ALLOWED_PREFIXES = ("rgb", "sparse_depth", "rgb and sparse_depth")


def _values(shape: tuple[int, ...], how: str, rng: np.random.Generator, scale: float) -> np.ndarray:
    base = rng.random(shape) * scale
    if how == "zero":
        return np.zeros(shape)
    if base.size == 0:
        return base
    if how == "nan":
        base.flat[0] = np.nan
    elif how == "inf":
        base.flat[-1] = np.inf
    elif how == "negative":
        base.flat[0] = -0.5
    elif how == "huge":
        base.flat[0] = 1e300
    elif how == "just_above_one":
        base.flat[0] = 1.0001
    return base


def _wrap(array: np.ndarray, how: str):  # noqa: ANN202
    if how == "list":
        return array.tolist()
    if how == "masked":
        return np.ma.masked_array(array)
    if how == "fortran":
        return np.asfortranarray(array)
    if how == "noncontiguous" and array.ndim >= 2:
        return np.repeat(array, 2, axis=-1)[..., ::2]
    return array


def _api_case(index: int):  # noqa: ANN202
    rgb_i, sparse_i, shape_i, value_i, wrap_i = API_MATRIX[index]
    rng = np.random.default_rng(index)
    hw = SHAPES[shape_i]
    rgb_shape = (*hw, 3) if len(hw) == 2 else hw[:-2] + hw[-2:] + (3,) if len(hw) == 3 else hw
    with np.errstate(all="ignore"):
        rgb_dtype = RGB_DTYPES[rgb_i]
        rgb = _values(rgb_shape, VALUES[value_i], rng, 255.0 if rgb_dtype in (np.uint8, np.int32, np.uint16) else 1.0)
        rgb = rgb.astype(rgb_dtype)
        sparse = (_values(hw, VALUES[(value_i + 1) % len(VALUES)], rng, 20.0)
                  * (rng.random(hw) < 0.1)).astype(SPARSE_DTYPES[sparse_i])
    return _wrap(rgb, WRAPPERS[wrap_i]), _wrap(sparse, WRAPPERS[(wrap_i + index) % len(WRAPPERS)])


@pytest.fixture(scope="module")
def completers(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("fuzz")
    checkpoint = save_model(Jarrn(TINY), folder / "tiny.safetensors")
    return [DepthCompleter.from_checkpoint(checkpoint), DepthCompleter.from_onnx(contract_graph(folder))]


def _check_api_case(completers, index: int) -> None:  # noqa: ANN001
    rgb, sparse = _api_case(index)
    outcomes = []
    for completer in completers:
        try:
            depth = completer.complete(rgb, sparse)
        except (ValueError, TypeError) as exc:
            message = str(exc)
            assert message.startswith(ALLOWED_PREFIXES), (index, message)
            assert "\n" not in message, (index, message)
            outcomes.append(("error", type(exc).__name__, message))
        else:
            assert depth.dtype == np.float32 and np.isfinite(depth).all(), index
            outcomes.append(("ok", depth.shape))
    assert outcomes[0] == outcomes[1], (index, outcomes)  # every backend accepts and refuses the same inputs


def _sample(total: int, seed: int) -> list[int]:
    return sorted(np.random.default_rng(seed).choice(total, size=min(FAST_SAMPLE, total), replace=False).tolist())


@pytest.mark.parametrize("index", _sample(len(API_MATRIX), 14))
def test_fuzz_arrays_fast(completers, index):
    _check_api_case(completers, index)


@pytest.mark.slow
def test_fuzz_arrays_full_matrix(completers):
    for index in range(len(API_MATRIX)):
        _check_api_case(completers, index)


# ---------------------------------------------------------------------------------------------------------------------
# corrupted checkpoints


def _mutations(valid: bytes, seed: int) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(seed)
    out = [("empty", b""), ("truncated_half", valid[: len(valid) // 2]), ("truncated_header", valid[:7])]
    for i in range(6):
        data = bytearray(valid)
        for position in rng.integers(0, min(len(data), 4096), size=1 + i):  # the header and the first tensors
            data[position] = int(rng.integers(0, 256))
        out.append((f"flipped_{i}", bytes(data)))
    out.append(("appended", valid + b"\0" * 13))
    return out


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    torch.manual_seed(0)
    network = Jarrn(TINY)
    project = save_model(network, folder / "m.safetensors").read_bytes()
    official = save_training_checkpoint(folder / "c.pt", {"network_state_dict": network.state_dict(),
                                                          "jarrn_config": TINY.to_dict()}).read_bytes()
    return {".safetensors": project, ".pt": official}


def _check_checkpoint(tmp_path, suffix: str, name: str, data: bytes) -> None:
    path = tmp_path / f"{name}{suffix}"
    path.write_bytes(data)
    try:
        network = load_model(path)
    except CheckpointError as exc:
        assert str(exc) and "\n" not in str(exc), (name, str(exc))
    else:  # a flip inside a weight's bytes gives another valid file: it must still be a finite float network
        assert all(torch.isfinite(p).all() for p in network.parameters()), name


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_fuzz_corrupted_checkpoints_fast(tmp_path, valid_files, suffix):
    for name, data in _mutations(valid_files[suffix], seed=1)[:8]:
        _check_checkpoint(tmp_path, suffix, name, data)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_fuzz_corrupted_checkpoints_full(tmp_path, valid_files, suffix):
    for seed in range(20):
        for name, data in _mutations(valid_files[suffix], seed=seed):
            _check_checkpoint(tmp_path, suffix, f"{seed}_{name}", data)


@pytest.mark.parametrize("config", [
    "[]", "{}", "null", "1", '"x"', '{"widths": null}', '{"widths": [8, 8, 8, 8, 8, 8, 8.5]}',
    '{"widths": [8, 8, 8, 8, 8, 8, 8], "sparse_fill": "magic"}', '{"widths": [true, 8, 8, 8, 8, 8, 8]}', "{",
])
def test_fuzz_recorded_configs(tmp_path, config):
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file(Jarrn(TINY).state_dict(), str(path), metadata={"format": "jarrn-deploy", "config": config})
    with pytest.raises(CheckpointError):
        load_model(path)


# ---------------------------------------------------------------------------------------------------------------------
# corrupted graphs


def _check_graph_bytes(tmp_path, name: str, data: bytes) -> None:
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(data)
    try:
        completer = DepthCompleter.from_onnx(path)
    except GraphError as exc:
        assert "\n" not in str(exc), (name, str(exc))
        return
    rgb, sparse = np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), np.float32)
    try:
        depth = completer.complete(rgb, sparse)
    except (GraphError, ValueError) as exc:
        assert "\n" not in str(exc)
    else:
        assert depth.shape == (8, 8)


def test_fuzz_corrupted_graphs_fast(tmp_path):
    valid = contract_graph(tmp_path).read_bytes()
    for name, data in _mutations(valid, seed=2):
        _check_graph_bytes(tmp_path, name, data)


@pytest.mark.slow
def test_fuzz_corrupted_graphs_full(tmp_path):
    valid = contract_graph(tmp_path, metadata={**GOOD_METADATA, "jarrn.note": json.dumps("x" * 200)}).read_bytes()
    for seed in range(40):
        for name, data in _mutations(valid, seed=seed):
            _check_graph_bytes(tmp_path, f"{seed}_{name}", data)


# ---------------------------------------------------------------------------------------------------------------------
# command-line values

TRAIN_BASE = ["--widths", "8,8,8,8,8,8,8", "--crop", "64x64", "--epoch-samples", "2", "--batch-size", "1",
              "--epochs", "1", "--val-every", "-1", "--no-progress", "--render-scale", "0.5,0.5"]
NUMERIC_FLAGS = ("--batch-size", "--checkpoint-every", "--log-every", "--lr", "--workers", "--threads", "--epochs",
                 "--gamma", "--warmup-epochs", "--grad-clip", "--jitter", "--real-sparse-prob", "--outlier-prob",
                 "--ema", "--depth-scale", "--time-limit-min", "--epoch-samples", "--val-every")
BAD_VALUES = ("0", "-1", "nan", "inf", "-inf", "1e400", "abc", "", "2.5", "-0")
CLI_MATRIX = list(itertools.product(NUMERIC_FLAGS, BAD_VALUES))


def _check_train_value(tmp_path, capsys, flag: str, value: str) -> None:  # noqa: ANN001
    from jarrn_deploy.model.train import main

    try:
        code = main(TRAIN_BASE + ["--out", str(tmp_path / "run"), flag, value, "--export", str(tmp_path / "m.st")])
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, (flag, value, err)
    # --export ends in .st, not .safetensors: every value that passes the numeric checks stops there, before training
    assert code in (2, 3, 4, 5), (flag, value, code, err)
    assert not (tmp_path / "run" / "last.pt").exists(), (flag, value)


@pytest.mark.parametrize("flag,value", [CLI_MATRIX[i] for i in _sample(len(CLI_MATRIX), 7)])
def test_fuzz_train_values_fast(tmp_path, capsys, flag, value):
    _check_train_value(tmp_path, capsys, flag, value)


@pytest.mark.slow
def test_fuzz_train_values_full(tmp_path, capsys):
    for flag, value in CLI_MATRIX:
        _check_train_value(tmp_path, capsys, flag, value)


def test_every_documented_error_is_a_jarrn_error():
    from jarrn_deploy.export.onnx_graph import ExportError
    from jarrn_deploy.model.datasets import DatasetError
    from jarrn_deploy.runtime.backends import BackendUnavailable
    from jarrn_deploy.runtime.memory_guard import MemoryGuardError

    from jarrn_deploy.model.contract import EmptySparseDepthError, InputTypeError, NonFiniteDepthError

    for cls in (CheckpointError, GraphError, ExportError, DatasetError, BackendUnavailable, MemoryGuardError,
                EmptySparseDepthError, NonFiniteDepthError, InputTypeError):
        assert issubclass(cls, JarrnError), cls


# ---------------------------------------------------------------------------------------------------------------------
# round 3 (issue 25): one rule for empty maps, channel axes and non-finite output, on every entry point

ROUND3_CASES = ("empty_map", "empty_batch_item", "channel_axis", "batched_channel_axis", "nan_model")
ROUND3_ENTRIES = ("model.complete", "torch", "ort")
ROUND3_MATRIX = list(itertools.product(ROUND3_CASES, ROUND3_ENTRIES))
ROUND3_EXPECTED = {"empty_map": "EmptySparseDepthError", "empty_batch_item": "EmptySparseDepthError",
                   "channel_axis": (16, 24), "batched_channel_axis": (2, 16, 24), "nan_model": "NonFiniteDepthError"}


@pytest.fixture(scope="module")
def round3(tmp_path_factory):
    folder = tmp_path_factory.mktemp("round3")
    torch.manual_seed(0)
    network = Jarrn(TINY).eval()
    nan_network = Jarrn(TINY).eval()
    with torch.no_grad():
        for parameter in nan_network.parameters():
            parameter.fill_(1e30)
    nan_path = save_model(nan_network, folder / "nan.safetensors")
    nan_graph(folder / "nan.onnx")
    good_graph = contract_graph(folder)
    return {
        "model.complete": (network, load_model(nan_path)),
        "torch": (DepthCompleter.from_network(network), DepthCompleter.from_checkpoint(nan_path)),
        "ort": (DepthCompleter.from_onnx(good_graph), DepthCompleter.from_onnx(folder / "nan.onnx")),
    }


def _check_round3(round3, case: str, entry: str) -> None:
    good, broken = round3[entry]
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    sparse = (rng.random((16, 24)) * 5 * (rng.random((16, 24)) < 0.2)).astype(np.float32)
    sparse[0, 0] = 2.0
    arguments = {
        "empty_map": (rgb, np.zeros_like(sparse)),
        "empty_batch_item": (np.stack([rgb, rgb]), np.stack([sparse, np.zeros_like(sparse)])),
        "channel_axis": (rgb, sparse[..., None]),
        "batched_channel_axis": (np.stack([rgb, rgb]), np.stack([sparse, sparse])[..., None]),
        "nan_model": (rgb, sparse),
    }[case]
    model = broken if case == "nan_model" else good
    try:
        outcome = model.complete(*arguments).shape
    except JarrnError as exc:
        outcome = type(exc).__name__
        assert "\n" not in str(exc)
        if case == "nan_model" and entry != "model.complete":
            assert "nan." in str(exc), str(exc)  # names the model file
    assert outcome == ROUND3_EXPECTED[case], (case, entry, outcome)


@pytest.mark.parametrize("case,entry", ROUND3_MATRIX[::4])
def test_fuzz_round3_one_rule_fast(round3, case, entry):
    _check_round3(round3, case, entry)


@pytest.mark.slow
def test_fuzz_round3_one_rule_full(round3):
    for case, entry in ROUND3_MATRIX:
        _check_round3(round3, case, entry)


@pytest.mark.slow
def test_fuzz_round3_infer_rows_through_the_real_entry_point(tmp_path):
    """Every row of tests/runtime/test_infer_reliability.py through ``python -m jarrn_deploy.cli infer``: the exit status of
    the table, one ``error:`` line, no traceback."""
    import importlib.util
    import re

    from tests.reliability_support import REPO, run_command
    from tests.runtime import test_infer_reliability as rows

    files = rows.make_files(tmp_path)
    for overrides, expected, needle in rows.ROWS:
        if overrides.get("backend") == "tensorrt" and importlib.util.find_spec("tensorrt") is not None:
            continue
        options = {"--rgb": str(files["rgb"]), "--sparse": str(files["npy"]), "--out": str(tmp_path / "out"),
                   "--model": str(files["model"])}
        for flag, value in overrides.items():
            if value is None:
                options.pop("--" + flag.replace("_", "-"), None)
            else:
                options["--" + flag.replace("_", "-")] = value.format(**files, tmp=tmp_path)
        argv = ["-m", "jarrn_deploy.cli", "infer", *[item for pair in options.items() for item in pair]]
        result = run_command(argv, REPO)
        lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("warning:")]
        assert result.returncode == expected, (overrides, result.stderr)
        assert len(lines) == 1 and re.search(needle, lines[0]) and "Traceback" not in result.stderr, result.stderr
