"""Validate exported graphs: ONNX Runtime (CPU) against the PyTorch reference, and against ground truth.

Cases: the bundled real frames and random inputs at several sizes and batch sizes, at least one size not a multiple of
64 (static graphs: their own size and batch). Two sets of real-frame cases (:data:`CASE_SETS`): ``full`` is
``jarrn_deploy.model.real_frames.evaluation_cases`` (both KITTI cameras with real LiDAR at 375x1242, the indoor frames with 500 and
100 random ground-truth points, the Kinect v2 frame at 1080x1440); ``quick`` (what an export runs, a quarter of the
pixels) is one frame per sensor (KITTI camera 02, TUM and Kinect v2 with 500 points), frames larger than a KITTI
frame centre-cropped to about its pixel count before the points are drawn. Per case: max and mean absolute difference in metres
between the graph's ``depth`` and PyTorch FP32's, and, for real frames, RMSE against ground truth for both.

Bounds (:class:`Bounds`, by default each precision's tolerances in :mod:`jarrn_deploy.export.precisions`), checked per
case: FP32 max abs <= 1e-3 m on every case; FP16 and INT8 RMSE vs ground truth at most 2% and 5% above PyTorch FP32's
on every real frame; a graph whose precision has no bound fails. Reports are printed and written next to the graph as
``<name>.validation.md`` and ``<name>.validation.json``.

Command line (validates one or more graphs against one network; exit status 6 when a bound is exceeded)::

    python export/validate.py artifacts/jarrn_fp32.onnx artifacts/jarrn_fp16.onnx artifacts/jarrn_int8.onnx
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402

from jarrn_deploy.export.estimates import MEASURED_S, about, on_this_machine  # noqa: E402
from jarrn_deploy.export.graph_check import GraphError, check_graph  # noqa: E402
from jarrn_deploy.export.precisions import PRECISION_SPECS, onnx_precision, tolerance_text  # noqa: E402
from jarrn_deploy.export.onnx_graph import ExportError, atomic_write_bytes, file_sha256, read_metadata  # noqa: E402
from jarrn_deploy.cli import command  # noqa: E402
from jarrn_deploy.errors import EXIT_CHECK_FAILED, InputError  # noqa: E402
from jarrn_deploy.model import CONTRACT, Jarrn, MetricJarrn  # noqa: E402
from jarrn_deploy.progress import Log, progress_logger

CASE_SETS = ("quick", "full")
"""The real-frame case sets, cheapest first (see the module docstring)."""
QUICK_MAX_PIXELS = 375 * 1242
"""``quick``: larger frames are centre-cropped to at most this many pixels (a KITTI frame's)."""
QUICK_POINT_COUNTS = (500,)
"""``quick``: random ground-truth points drawn for a frame without real sparse depth."""

# (batch, height, width) of the random cases: two batch sizes, 75x130 and 100x333 are not multiples of 64.
RANDOM_SHAPES: tuple[tuple[int, int, int], ...] = ((1, 128, 192), (2, 75, 130), (3, 100, 333))
RANDOM_SEED = 0



def _registry_bounds(kind: str) -> dict[str, float]:
    return {name: getattr(spec, kind) for name, spec in PRECISION_SPECS.items() if getattr(spec, kind) is not None}


@dataclass(frozen=True)
class Bounds:
    """The accuracy every exported graph must reach, per precision (default: the registry's tolerances)."""

    max_abs_m: Mapping[str, float] = field(default_factory=lambda: _registry_bounds("max_abs_m"))
    """Precision -> largest |ONNX - PyTorch| over every pixel of every case, metres (a precision absent: unchecked)."""
    rmse_rel: Mapping[str, float] = field(default_factory=lambda: _registry_bounds("rmse_rel"))
    """Precision -> how much RMSE vs ground truth may exceed PyTorch FP32's, a fraction, on every real frame."""

    def text(self, precision: str) -> str:
        """The bound of ``precision`` as the report writes it."""
        return tolerance_text(self.max_abs_m.get(precision), self.rmse_rel.get(precision))

    def to_dict(self) -> dict[str, float]:
        """``{"fp32_max_abs_m": 0.001, "fp16_rmse_rel": 0.02, ...}``, as the JSON reports write them."""
        return {**{f"{p}_max_abs_m": v for p, v in self.max_abs_m.items()},
                **{f"{p}_rmse_rel": v for p, v in self.rmse_rel.items()}}


@dataclass
class CaseResult:
    """One validation case of one graph."""

    name: str
    """Real frame name (e.g. "kitti_02", "tum_desk@500") or "random BxHxW"."""
    shape: tuple[int, int, int]
    """Input (batch, height, width)."""
    max_abs_m: float
    """Largest |ONNX - PyTorch FP32| in metres."""
    mean_abs_m: float
    """Mean |ONNX - PyTorch FP32| in metres."""
    rmse_m: float | None = None
    """The graph's RMSE vs ground truth, metres (real frames only)."""
    reference_rmse_m: float | None = None
    """PyTorch FP32's RMSE vs ground truth on the same case, metres."""
    ok: bool = True
    """Whether this case is within the bounds."""
    seconds: float = 0.0
    """ONNX Runtime wall time for the case."""

    @property
    def rmse_change(self) -> float | None:
        if self.rmse_m is None or not self.reference_rmse_m:
            return None
        return self.rmse_m / self.reference_rmse_m - 1.0


@dataclass
class ValidationReport:
    """All cases of one graph, the bounds, and what failed."""

    onnx_path: str
    precision: str
    library: str
    bounds: Bounds
    cases: list[CaseResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> dict:
        real = [c for c in self.cases if c.rmse_m is not None]
        rmse = float(np.mean([c.rmse_m for c in real])) if real else None
        ref = float(np.mean([c.reference_rmse_m for c in real])) if real else None
        return {
            "precision": self.precision,
            "max_abs_m": max((c.max_abs_m for c in self.cases), default=float("nan")),
            "mean_abs_m": float(np.mean([c.mean_abs_m for c in self.cases])) if self.cases else float("nan"),
            "mean_rmse_m": rmse,
            "mean_reference_rmse_m": ref,
            "rmse_change": (rmse / ref - 1.0) if rmse is not None and ref else None,
            "passed": self.passed,
        }

    def to_dict(self) -> dict:
        return {
            "onnx": self.onnx_path,
            "precision": self.precision,
            "library": self.library,
            "bounds": self.bounds.to_dict(),
            "passed": self.passed,
            "failures": self.failures,
            "notes": self.notes,
            "summary": self.summary(),
            "cases": [{**asdict(c), "rmse_change": c.rmse_change} for c in self.cases],
        }


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value != 0 and abs(value) < 10 ** -digits:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.2f}%"


def markdown_table(reports: Sequence[ValidationReport]) -> str:
    """Per-case table and per-precision summary of one or more reports, as markdown."""
    lines = [
        "| precision | case | B x H x W | max abs err vs PyTorch (m) | mean abs err (m) | RMSE vs GT (m) "
        "| PyTorch FP32 RMSE (m) | RMSE change | ok |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        for c in report.cases:
            lines.append(
                f"| {report.precision} | {c.name} | {c.shape[0]}x{c.shape[1]}x{c.shape[2]} | {_fmt(c.max_abs_m, 6)} "
                f"| {_fmt(c.mean_abs_m, 6)} | {_fmt(c.rmse_m)} | {_fmt(c.reference_rmse_m)} | {_pct(c.rmse_change)} "
                f"| {'yes' if c.ok else '**NO**'} |"
            )
    lines += [
        "",
        "| precision | library | max abs err (m) | mean abs err (m) | mean RMSE vs GT (m) | PyTorch FP32 (m) "
        "| RMSE change | bound | result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        s = report.summary()
        bound = report.bounds.text(report.precision)
        lines.append(
            f"| {report.precision} | {report.library} | {_fmt(s['max_abs_m'], 6)} | {_fmt(s['mean_abs_m'], 6)} "
            f"| {_fmt(s['mean_rmse_m'])} | {_fmt(s['mean_reference_rmse_m'])} | {_pct(s['rmse_change'])} | {bound} "
            f"| {'PASS' if report.passed else '**FAIL**'} |"
        )
    for report in reports:
        for failure in report.failures:
            lines.append(f"\n- FAIL ({report.precision}, {Path(report.onnx_path).name}): {failure}")
        for note in report.notes:
            lines.append(f"\n- note ({report.precision}): {note}")
    return "\n".join(lines) + "\n"


def write_reports(reports: Sequence[ValidationReport], stem_path: str | Path) -> tuple[Path, Path]:
    """``<stem>.validation.md`` and ``<stem>.validation.json`` (atomic) next to ``stem_path``."""
    stem_path = Path(stem_path)
    base = stem_path.with_suffix("") if stem_path.suffix == ".onnx" else stem_path
    md_path = base.parent / f"{base.name}.validation.md"
    json_path = base.parent / f"{base.name}.validation.json"
    header = f"# Validation of {', '.join(Path(r.onnx_path).name for r in reports)}\n\n"
    atomic_write_bytes(md_path, (header + markdown_table(reports)).encode())
    payload = [r.to_dict() for r in reports]
    atomic_write_bytes(json_path, json.dumps(payload if len(payload) > 1 else payload[0], indent=2).encode())
    return md_path, json_path


# ---------------------------------------------------------------------------------------------------------------------
# cases


@dataclass
class _Case:
    name: str
    rgb: np.ndarray  # [B,3,H,W] float32
    sparse: np.ndarray  # [B,1,H,W] float32 metres
    gt: np.ndarray | None  # [H,W] metres (real frames, batch 1)


def _fit(array: np.ndarray, hw: tuple[int, int], mode: str) -> np.ndarray:
    """Centre-crop the last two axes of ``array`` to ``hw``, padding (edge / zeros) where it is smaller."""
    from jarrn_deploy.model.crop import crop_or_pad

    return crop_or_pad(array, hw, mode=mode, channels_last=False)


def _quick_frames(frames: list) -> list:
    """One frame per sensor (the name's part before the first "_": kitti, tum, kinect2), each at most
    :data:`QUICK_MAX_PIXELS`."""
    from dataclasses import replace

    from jarrn_deploy.model.crop import crop_or_pad

    chosen: dict[str, object] = {}
    for frame in frames:
        chosen.setdefault(frame.name.split("_")[0], frame)
    quick = []
    for frame in chosen.values():
        height, width = frame.gt.shape
        scale = min(1.0, math.sqrt(QUICK_MAX_PIXELS / (height * width)))
        hw = (int(height * scale), int(width * scale))
        if hw != (height, width):
            frame = replace(frame, rgb=crop_or_pad(frame.rgb, hw, mode="edge"), gt=crop_or_pad(frame.gt, hw),
                            sparse=None if frame.sparse is None else crop_or_pad(frame.sparse, hw), intrinsics=None)
        quick.append(frame)
    return quick


def real_cases(static_hw: tuple[int, int] | None = None, static_batch: int | None = None,
               case_set: str = "full") -> list[_Case]:
    """The bundled real frames as graph inputs, ``case_set`` one of :data:`CASE_SETS` (cropped/padded to a static
    size; repeated to a static batch)."""
    from jarrn_deploy.model.contract import prepare_inputs
    from jarrn_deploy.model.real_frames import INDOOR_POINT_COUNTS, evaluation_cases, load_real_frames

    frames = load_real_frames()
    if case_set == "quick":
        frames, counts = _quick_frames(frames), QUICK_POINT_COUNTS
    else:
        counts = INDOOR_POINT_COUNTS
    cases = []
    for case in evaluation_cases(frames, point_counts=counts):
        rgb, sparse, _ = prepare_inputs(case.rgb, case.sparse)
        gt = case.gt
        if static_hw:
            rgb, sparse, gt = _fit(rgb, static_hw, "edge"), _fit(sparse, static_hw, "constant"), _fit(gt, static_hw,
                                                                                                      "constant")
        if static_batch and static_batch > 1:
            rgb, sparse = np.repeat(rgb, static_batch, axis=0), np.repeat(sparse, static_batch, axis=0)
        cases.append(_Case(case.name, np.ascontiguousarray(rgb), np.ascontiguousarray(sparse), gt))
    return cases


def random_cases(
    shapes: Sequence[tuple[int, int, int]], seed: int = RANDOM_SEED, depth_range_m: tuple[float, float] = (0.5, 10.0)
) -> list[_Case]:
    """Random RGB and sparse depth (about 5% of pixels, uniform in ``depth_range_m``) at each (batch, height, width).

    The default range is indoor-like; the real frames cover outdoor ranges (KITTI, up to ~80 m).
    """
    rng = np.random.default_rng(seed)
    cases = []
    for batch, height, width in shapes:
        rgb = rng.random((batch, 3, height, width), dtype=np.float32)
        keep = rng.random((batch, 1, height, width)) < 0.05
        sparse = (rng.uniform(*depth_range_m, (batch, 1, height, width)) * keep).astype(np.float32)
        cases.append(_Case(f"random {batch}x{height}x{width}", rgb, sparse, None))
    return cases


def _static_dims(model: onnx.ModelProto) -> tuple[int | None, tuple[int, int] | None]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims[0].HasField("dim_value") else None
    hw = (dims[2].dim_value, dims[3].dim_value) if dims[2].HasField("dim_value") and dims[3].HasField("dim_value") \
        else None
    return batch, hw


def default_cases(model: onnx.ModelProto, *, real_frames: bool = True,
                  case_set: str = "full") -> tuple[list[_Case], list[str]]:
    """Real frames + random cases suited to the graph's static or dynamic input dims; notes on what was skipped."""
    batch, hw = _static_dims(model)
    notes = []
    if hw is None and batch is None:
        shapes = list(RANDOM_SHAPES)
    elif hw is None:
        shapes = [(batch, h, w) for _, h, w in RANDOM_SHAPES]
    elif batch is None:
        shapes = [(1, *hw), (2, *hw)]
    else:
        shapes = [(batch, *hw)]
    cases = random_cases(shapes)
    if real_frames:
        try:
            cases = real_cases(hw, batch, case_set) + cases
        except (FileNotFoundError, OSError, ValueError) as exc:
            notes.append(f"bundled real frames unavailable ({exc}); RMSE vs ground truth not checked")
    else:
        notes.append("real frames skipped; RMSE vs ground truth not checked")
    return cases, notes


# ---------------------------------------------------------------------------------------------------------------------
# running


class ReferenceCache:
    """PyTorch FP32 outputs per case, shared between the graphs validated against one network."""

    def __init__(self, network: Jarrn) -> None:
        self.network = network.eval()
        self._outputs: dict[tuple[str, tuple[int, ...], bool], list[np.ndarray]] = {}

    @torch.inference_mode()
    def outputs(self, case: _Case, aux: bool) -> list[np.ndarray]:
        key = (case.name, case.rgb.shape, aux)
        if key not in self._outputs:
            result = MetricJarrn(self.network, aux_outputs=aux)(torch.from_numpy(case.rgb),
                                                                  torch.from_numpy(case.sparse))
            result = result if isinstance(result, tuple) else (result,)
            self._outputs[key] = [t.float().numpy() for t in result]
        return self._outputs[key]


def _session(path: str | Path):
    from jarrn_deploy.export.ort_session import open_session

    session = open_session(path, log_severity=3)
    check_graph(session, path)  # the contract's inputs, outputs and jarrn.* metadata, before it is trusted
    return session


def _rmse(pred: np.ndarray, gt: np.ndarray) -> float | None:
    from jarrn_deploy.model.metrics import depth_metrics

    try:
        return depth_metrics(pred, gt).rmse
    except ValueError:  # no valid GT pixel in a static crop, or a non-finite prediction (reported separately)
        return None


def validate_onnx(
    onnx_path: str | Path,
    network: Jarrn,
    *,
    bounds: Bounds = Bounds(),
    real_frames: bool = True,
    reference: ReferenceCache | None = None,
    cases: list | None = None,
    case_set: str = "full",
    log: Log | None = None,
) -> ValidationReport:
    """Run every case (``cases``, else the default ones with ``case_set``'s real frames) through ONNX Runtime and
    PyTorch and check the bounds for the graph's precision."""
    from tqdm.auto import tqdm

    log = log or (lambda message: None)
    onnx_path = Path(onnx_path)
    model = onnx.load(str(onnx_path), load_external_data=False)
    precision = onnx_precision(model, str(onnx_path))
    library = json.loads(read_metadata(model).get("precision_info", "{}")).get("library", "-")
    output_names = [o.name for o in model.graph.output]
    aux = len(output_names) > 1
    report = ValidationReport(str(onnx_path), precision, library, bounds)
    if cases is None:
        cases, notes = default_cases(model, real_frames=real_frames, case_set=case_set)
        report.notes.extend(notes)
    del model
    reference = reference or ReferenceCache(network)
    session = _session(onnx_path)
    rel, max_abs = bounds.rmse_rel.get(precision), bounds.max_abs_m.get(precision)
    if rel is None and max_abs is None:
        report.failures.append(f"precision {precision}: no bound to check it against (bounds are set for "
                               f"{', '.join(sorted({*bounds.max_abs_m, *bounds.rmse_rel}))})")
    for case in tqdm(cases, desc=f"validating {precision}", unit="case", leave=False, disable=None):
        start = time.perf_counter()
        got = session.run(None, {CONTRACT.rgb_name: case.rgb, CONTRACT.sparse_name: case.sparse})
        seconds = time.perf_counter() - start
        want = reference.outputs(case, aux)
        depth, ref_depth = got[0], want[0]
        if depth.shape != ref_depth.shape or depth.dtype != np.float32:
            report.failures.append(f"{case.name}: output {depth.dtype}{list(depth.shape)}, expected "
                                   f"float32{list(ref_depth.shape)}")
            report.cases.append(CaseResult(case.name, case.rgb.shape[:1] + case.rgb.shape[2:], math.inf, math.inf,
                                           ok=False, seconds=seconds))
            continue
        diff = np.abs(depth.astype(np.float64) - ref_depth)
        result = CaseResult(case.name, (case.rgb.shape[0], *case.rgb.shape[2:]), float(np.max(diff)),
                            float(np.mean(diff)), seconds=round(seconds, 3))
        if not np.isfinite(depth).all():
            result.ok = False
            report.failures.append(f"{case.name}: the graph output contains NaN or inf")
        if max_abs is not None:
            worst = result.max_abs_m
            if aux:
                worst = max([worst] + [float(np.max(np.abs(g - w))) for g, w in zip(got[1:], want[1:])])
            if not worst <= max_abs:
                result.ok = False
                report.failures.append(
                    f"{case.name}: max abs difference {worst:.3g} exceeds {max_abs:g}"
                    + (" (depth or an aux output)" if aux else " m")
                )
        if case.gt is not None:
            result.rmse_m = _rmse(depth[0, 0], case.gt)
            result.reference_rmse_m = _rmse(ref_depth[0, 0], case.gt)
            change = result.rmse_change
            if rel is not None and change is not None and change > rel:
                result.ok = False
                report.failures.append(
                    f"{case.name}: RMSE {result.rmse_m:.4f} m is {change * 100:+.2f}% vs PyTorch FP32's "
                    f"{result.reference_rmse_m:.4f} m (bound +{rel * 100:g}%)"
                )
        report.cases.append(result)
        log(f"{precision} {case.name}: max abs {result.max_abs_m:.2e} m, mean abs {result.mean_abs_m:.2e} m"
            + (f", RMSE {result.rmse_m:.4f} m (PyTorch {result.reference_rmse_m:.4f} m)" if result.rmse_m else ""))
    if rel is not None and not any(c.rmse_m is not None for c in report.cases):
        report.notes.append(f"no real frame with ground truth was run: the {precision} RMSE bound was not checked")
    return report


# ---------------------------------------------------------------------------------------------------------------------
# command line


def network_for(onnx_path: str | Path, checkpoint: str | None, prob_activation: str | None) -> Jarrn:
    """The network a graph was exported from: ``checkpoint`` if given, else the one its metadata records."""
    from jarrn_deploy.model import load_model

    meta = read_metadata(onnx_path)
    try:
        config = json.loads(meta.get("config", "{}"))
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise GraphError(f"{onnx_path}: metadata jarrn.config is not a JSON object ({meta.get('config', '')[:60]!r})")
    if checkpoint is None:
        checkpoint = meta.get("checkpoint") or None
        if not checkpoint or not Path(checkpoint).is_file():
            raise ExportError(
                f"{onnx_path}: the checkpoint it was exported from ({checkpoint or 'none recorded'}) is not "
                "available; pass --checkpoint"
            )
        if meta.get("checkpoint_sha256") and file_sha256(checkpoint) != meta["checkpoint_sha256"]:
            raise ExportError(f"{onnx_path}: {checkpoint} changed since the export (sha256 differs); pass --checkpoint")
    return load_model(
        checkpoint,
        prob_activation=prob_activation or config.get("prob_activation"),
        depth_normalisation=config.get("depth_normalisation"),
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python export/validate.py",
        description="Check exported JARRN graphs with ONNX Runtime against PyTorch FP32 and ground truth; "
                    "writes <name>.validation.md/.json next to the first graph; exit status 6 when a bound is "
                    "exceeded.",
    )
    p.add_argument("onnx", nargs="+", type=Path, help="graphs written by export/to_onnx.py (any precision)")
    p.add_argument("--checkpoint", default=None,
                   help="weights to compare against (default: the checkpoint recorded in the graph's metadata)")
    p.add_argument("--prob-activation", choices=("softmax_height", "sigmoid"), default=None,
                   help="override the probability activation (default: the one recorded in the graph's metadata)")
    p.add_argument("--no-real-frames", action="store_true", help="random inputs only (no RMSE vs ground truth)")
    p.add_argument("--cases", choices=CASE_SETS, default="full",
                   help="real-frame cases: full (default: both KITTI cameras, TUM and Kinect v2 with 500 and 100 "
                        "points, full size) or quick (one frame per sensor, at most a KITTI frame's size; what "
                        "jarrn export runs)")
    for name, spec in PRECISION_SPECS.items():
        if spec.max_abs_m is not None:
            p.add_argument(f"--{name}-max-abs", type=float, default=spec.max_abs_m, metavar="M",
                           help=f"{spec.label} bound: max |ONNX - PyTorch| in metres (default %(default)g)")
        if spec.rmse_rel is not None:
            p.add_argument(f"--{name}-rmse-rel", type=float, default=spec.rmse_rel, metavar="FRACTION",
                           help=f"{spec.label} bound: RMSE vs GT at most this fraction above PyTorch FP32's "
                                "(default %(default)g)")
    p.add_argument("--report", type=Path, default=None,
                   help="where to write the reports, as a path stem (default: next to the first graph)")
    return p


def bounds_from_args(args: argparse.Namespace) -> Bounds:
    """The bounds the ``--<precision>-max-abs`` / ``--<precision>-rmse-rel`` options give."""
    return Bounds(
        max_abs_m={n: getattr(args, f"{n}_max_abs") for n, s in PRECISION_SPECS.items() if s.max_abs_m is not None},
        rmse_rel={n: getattr(args, f"{n}_rmse_rel") for n, s in PRECISION_SPECS.items() if s.rmse_rel is not None},
    )


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 when every graph passes, 6 when one fails its bounds, else the error's (``jarrn --help``)."""
    args = _parser().parse_args(argv)
    bounds = bounds_from_args(args)
    for path in args.onnx:
        if not path.is_file():
            raise InputError(f"no such file {path}")
    from jarrn_deploy.model import CheckpointError

    reports, reference, network_key = [], None, None
    try:
        for path in args.onnx:
            try:
                onnx.checker.check_model(str(path))
            except Exception as exc:  # onnx raises ValidationError, DecodeError, OSError ...
                raise GraphError(f"{path}: not a valid ONNX file ({str(exc).splitlines()[0]})") from None
            network = network_for(path, args.checkpoint, args.prob_activation)
            key = (args.checkpoint or read_metadata(path).get("checkpoint_sha256"), network.config)
            if key != network_key:
                reference, network_key = ReferenceCache(network), key
            cases = ("random inputs only" if args.no_real_frames else f"the {args.cases} cases: "
                     f"{about(MEASURED_S[args.cases])} {on_this_machine()} for the bundled model")
            progress_logger("validate")(f"validating {path} on {cases} ...")
            reports.append(validate_onnx(path, network, bounds=bounds, real_frames=not args.no_real_frames,
                                         reference=reference, case_set=args.cases))
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None
    except (ExportError, CheckpointError):
        raise
    print(markdown_table(reports))
    md_path, json_path = write_reports(reports, args.report or args.onnx[0])
    print(f"reports: {md_path}, {json_path}")
    return 0 if all(r.passed for r in reports) else EXIT_CHECK_FAILED


if __name__ == "__main__":
    sys.exit(main())
