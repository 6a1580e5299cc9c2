"""Measure which INT8 exclusions matter: quantize with several exclusion sets and compare against ground truth.

    python export/int8_sensitivity.py --checkpoint model/weights/jarrn_small_default.safetensors

For each variant the graph is traced and simplified once, quantized with that set of node-name regexes kept in FP32
(the contract part, i.e. normalisation, padding, rectification and de-normalisation, is never quantized), and run on
the bundled real frames. The table (printed, and written as markdown to ``--report``) gives the convolutions running
in INT8, the error against PyTorch FP32 and the RMSE change against ground truth. The default exclusion list
(:data:`jarrn_deploy.export.precision.INT8_EXCLUDE`) was chosen from this table; export/README.md records the numbers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run by its path: the packages come from the installed project (jarrn_deploy/entry_guard.py)
    import runpy

    runpy.run_path(str(Path(__file__).resolve().parents[1] / "jarrn_deploy" / "entry_guard.py"))

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from jarrn_deploy.export.calibration import load_calibration  # noqa: E402
from jarrn_deploy.export.onnx_graph import ExportError, ExportOptions, atomic_write_bytes, simplify, trace_to_onnx  # noqa: E402
from jarrn_deploy.export.precision import INT8_EXCLUDE, to_int8  # noqa: E402
from jarrn_deploy.export.validate import ReferenceCache, real_cases, validate_onnx  # noqa: E402

_STEM = r"^/network/(rgb_x_block|sfmap_block)/(rgb_x_block|sfmap_block)\.0/Conv$"
_HEAD = r"^/network/(rgb_x_block|sfmap_block)/(rgb_x_block|sfmap_block)\.4/Conv$"
_OUTER_STACKS = r"^/network/(rgb_x_block|sfmap_block)/(rgb_x_block|sfmap_block)\.(1|3)/"
_VISUAL_DECODER = r"^/network/rgb_x_block/.*block\.3/"  # the Stacked after each level's inner part (upsampling path)
_VISUAL_ENCODER = r"^/network/rgb_x_block/.*block\.(0|1)/"  # each level's stride-2 conv and first Stacked
_VISUAL_FULL_RES = r"^/network/rgb_x_block/rgb_x_block\.(1|3)/"
VARIANTS: dict[str, tuple[str, ...]] = {
    "none (every U-Net conv INT8)": (),
    "stems": (_STEM,),
    "heads": (_HEAD,),
    "stems + heads": (_STEM, _HEAD),
    "stems + heads + full-resolution blocks": (_STEM, _HEAD, _OUTER_STACKS),
    "stems + heads + visual decoder": (_STEM, _HEAD, _VISUAL_DECODER),
    "stems + heads + visual encoder": (_STEM, _HEAD, _VISUAL_ENCODER),
    "stems + heads + visual full-resolution blocks (default)": INT8_EXCLUDE,
    "refine branch FP32": (r"^/network/sfmap_block/",),
    "visual branch FP32": (r"^/network/rgb_x_block/",),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python export/int8_sensitivity.py", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="weights (default: the bundled default model)")
    p.add_argument("--calibration", default=None, help="as for to_onnx.py (default: the built-in set)")
    p.add_argument("--variants", default=None,
                   help=f"comma-separated subset of: {'; '.join(VARIANTS)} (matched by prefix)")
    p.add_argument("--method", choices=("max", "entropy"), default="max", help="activation calibration")
    p.add_argument("--report", type=Path, default=Path("artifacts/int8_sensitivity.md"), help="markdown output")
    args = p.parse_args(argv)
    from jarrn_deploy.model import CheckpointError, load_model

    try:
        network = load_model(args.checkpoint)
        calibration = load_calibration(args.calibration)
    except (CheckpointError, FileNotFoundError, ExportError) as exc:
        sys.exit(f"error: {exc}")
    chosen = VARIANTS
    if args.variants:
        wanted = [v.strip() for v in args.variants.split(",")]
        chosen = {k: v for k, v in VARIANTS.items() if any(k.startswith(w) for w in wanted)}
    print("tracing ...", file=sys.stderr)
    base = simplify(trace_to_onnx(network, ExportOptions()))
    cases = real_cases()
    reference = ReferenceCache(network)
    rows = []
    with tempfile.TemporaryDirectory(prefix="jarrn_int8_sens_") as tmp:
        for name, patterns in chosen.items():
            print(f"variant: {name}", file=sys.stderr)
            model = onnx.ModelProto()
            model.CopyFrom(base)
            start = time.perf_counter()
            quantized, info = to_int8(model, calibration, exclude=patterns, method=args.method)
            seconds = time.perf_counter() - start
            path = Path(tmp) / "int8.onnx"
            meta = quantized.metadata_props.add()
            meta.key, meta.value = "jarrn.precision", "int8"
            onnx.save(quantized, str(path))
            report = validate_onnx(path, network, cases=cases, reference=reference)
            changes = [c.rmse_change for c in report.cases if c.rmse_change is not None]
            rows.append(
                f"| {name} | {info['quantized_convs']}/{info['convs']} | "
                f"{max(c.max_abs_m for c in report.cases):.3f} | {np.mean([c.mean_abs_m for c in report.cases]):.4f} | "
                f"{np.mean(changes) * 100:+.2f}% | {max(changes) * 100:+.2f}% | {seconds:.0f} s |"
            )
            print(rows[-1], file=sys.stderr)
    table = (
        "| INT8 exclusions (FP32) | convs in INT8 | max abs err vs PyTorch (m) | mean abs err (m) "
        "| mean RMSE change vs FP32 | worst frame | quantize time |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n"
    )
    print(table)
    atomic_write_bytes(args.report, (f"# INT8 exclusion sensitivity ({calibration.description})\n\n" + table).encode())
    print(f"written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
