"""``jarrn <verb> ...``: one command for every step; each verb is a module with ``main(argv) -> int``.

The verb modules are imported only when their verb is called, so ``jarrn --help`` and a verb's ``--help`` stay fast.
The older forms (``python export/to_onnx.py``, ``python -m jarrn_deploy.runtime.infer`` ...) run the same ``main`` functions.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from jarrn_deploy.dependencies import missing_module_message
from jarrn_deploy.errors import EXIT_BUG, EXIT_CODES, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, JarrnError

REPORT_HINT = "this is a bug in jarrn-deploy: please report it with the traceback above"

VERBS: dict[str, tuple[str, str]] = {
    "export": ("jarrn_deploy.export.to_onnx", "export the model to ONNX (FP32/FP16/INT8), validated against PyTorch"),
    "build-engine": ("jarrn_deploy.export.build_engine", "build a TensorRT or TensorRT-RTX engine from an exported ONNX"),
    "infer": ("jarrn_deploy.runtime.infer", "complete one RGB + sparse depth pair with any backend; writes depth PNGs"),
    "serve": ("jarrn_deploy.runtime.serve", "serve the model with NVIDIA Triton: HTTP, gRPC, dynamic batching, queue limits"),
    "bag": ("jarrn_deploy.runtime.bag.cli", "complete the depth of every frame of a ROS bag (camera + LiDAR + tf in, depth out)"),
    "bench": ("jarrn_deploy.benchmarks.run", "latency and accuracy report for this machine"),
    "train": ("jarrn_deploy.model.train", "train a model (synthetic scenes, real RGB-D frames, KITTI/NYUv2/DIODE)"),
    "evaluate": ("jarrn_deploy.model.evaluate", "accuracy table of a model against interpolation on real frames"),
    "device-check": ("jarrn_deploy.benchmarks.device_check", "a few minutes of checks and benchmarks on a CUDA machine"),
}
"""Verb -> (module whose ``main(argv)`` runs it, one-line summary)."""


USAGE_EXAMPLES = (
    "jarrn infer --rgb image.png --sparse lidar.png --out results/   # complete one frame with the bundled model",
    "jarrn export --precision fp16                                    # export the bundled model to ONNX",
    "jarrn bench --quick                                              # how fast and accurate, on this machine",
    "jarrn train --help                                               # the options of one command",
)


def _usage() -> str:
    width = max(len(verb) for verb in VERBS)
    lines = ["usage: jarrn <command> [options]   (jarrn <command> --help for its options)", "", "commands:"]
    lines += [f"  {verb:<{width}}  {summary}" for verb, (_, summary) in VERBS.items()]
    lines += ["", "exit status:"]
    lines += [f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items()]
    lines += ["", "examples:", *(f"  {example}" for example in USAGE_EXAMPLES)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jarrn``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else EXIT_USAGE
    verb, rest = args[0], args[1:]
    if verb not in VERBS:
        print(f"jarrn: unknown command {verb!r}; expected one of: {', '.join(VERBS)}", file=sys.stderr)
        return EXIT_USAGE
    module_name, _ = VERBS[verb]
    module = importlib.import_module(module_name)
    return int(module.main(rest) or 0)


def command(main_function: Callable[..., int | None]) -> Callable[..., int]:
    """Decorate a verb's ``main(argv)``: a :class:`JarrnError` becomes one ``error:`` line and its exit code, a
    third-party package the command imports but this machine lacks one line with its install command (exit 5), Ctrl-C
    exits 130, anything else prints its traceback with a hint to report it and exits 1."""

    @functools.wraps(main_function)
    def guarded(*args, **kwargs) -> int:
        try:
            return int(main_function(*args, **kwargs) or 0)
        except JarrnError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except ModuleNotFoundError as exc:
            if not exc.name or exc.name.split(".")[0] == "jarrn_deploy":  # a broken install or a bug: shown as one
                return _report_bug()
            print(f"error: {missing_module_message(exc.name)}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # output piped into a reader that stopped early (``| head``): not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush stays quiet
            return EXIT_OK
        except SystemExit:
            raise
        except Exception:  # noqa: BLE001 - the last line of defence: a bug, shown as one
            return _report_bug()

    return guarded


def _report_bug() -> int:
    traceback.print_exc()
    print(REPORT_HINT, file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
