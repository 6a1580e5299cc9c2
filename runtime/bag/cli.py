"""The command line of ``jarrn bag`` / ``python -m jarrn_deploy.runtime.bag`` (building the parser imports nothing heavy)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from jarrn_deploy.cli import command
from jarrn_deploy.errors import UsageError
from jarrn_deploy.options import ignored_option, repeated_options

HELP_DESCRIPTION = """\
Complete the depth of every camera frame of a ROS recording: the LiDAR sweep nearest in time is projected
into the camera (CameraInfo model, transform from /tf_static and /tf or --extrinsics) and completed by the
model. IN is a rosbag2 folder or file (MCAP or sqlite3) or a ROS 1 .bag; OUT is a new rosbag2 folder with
/jarrn/depth (sensor_msgs/Image, 32FC1 metres, REP 118, NaN = no depth) carrying each camera image's header.
No ROS install is needed (rosbags)."""

HELP_EPILOG = """\
topics:
  Found by type when IN has one Image or CompressedImage, one CameraInfo and one PointCloud2 topic;
  otherwise choose with --image-topic, --camera-info-topic, --cloud-topic. Images: rgb8, bgr8, rgba8,
  bgra8, mono8, JPEG/PNG CompressedImage (Bayer and 16-bit images are refused: debayer first).

frames that are skipped (a warning each and a count at the end, not an error):
  an image with no sweep within --max-dt, a sweep with no point in the image, a /tf edge with no sample
  near the sweep's time. Any other bad input stops with one line and leaves no OUT.

exit status: 0 done, 2 bad argument, 3 unusable input (no CameraInfo, no transform between the cloud's
and the camera's frames, an encoding it cannot decode, an empty or damaged bag, a missing, folder or
malformed --model or --extrinsics file), 4 OUT cannot be written (or exists without --overwrite, or is IN,
holds IN or lies inside IN's rosbag2 folder), 5 a missing package or no server at --server.
"""

HELP_EXAMPLES = """\
examples:
  jarrn bag drive.mcap --out drive_depth
  jarrn bag drive.bag --out drive_depth --backend onnxruntime --write-sparse --preview previews/
  jarrn bag drive/ --out drive_depth --server gpu-box:8001 --storage sqlite3
  jarrn bag drive/ --out drive_depth --extrinsics lidar_to_camera.json --max-dt 0.02
"""


def build_parser() -> argparse.ArgumentParser:
    from jarrn_deploy.runtime.backends.registry import BACKEND_NAMES
    from jarrn_deploy.runtime.bag.output import STORAGES
    from jarrn_deploy.runtime.bag.pipeline import BagOptions
    from jarrn_deploy.runtime.bag.tf import EXTRINSICS_FORMAT

    max_dt_s = BagOptions.max_dt_s  # the dataclass's defaults are its class attributes
    parser = argparse.ArgumentParser(prog="jarrn bag", description=HELP_DESCRIPTION,
                                     epilog=f"{HELP_EPILOG}\n{EXTRINSICS_FORMAT}\n\n{HELP_EXAMPLES}",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, metavar="IN", help="rosbag2 folder, .mcap or .db3 file, or ROS 1 .bag")
    parser.add_argument("--out", required=True, type=Path, help="the rosbag2 folder to write (must not exist)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (once the new one is done)")
    parser.add_argument("--storage", choices=STORAGES, default=BagOptions.storage, help="OUT's storage (default %(default)s)")
    topics = parser.add_argument_group("input topics and geometry")
    topics.add_argument("--image-topic", default=None, help="camera topic (Image or CompressedImage)")
    topics.add_argument("--camera-info-topic", default=None, help="CameraInfo topic of that camera")
    topics.add_argument("--cloud-topic", default=None, help="PointCloud2 topic of the LiDAR")
    topics.add_argument("--extrinsics", type=Path, default=None,
                        help="JSON cloud-to-camera transform instead of /tf_static and /tf (format below)")
    topics.add_argument("--max-dt", type=float, default=max_dt_s, metavar="SECONDS",
                        help=f"pair an image with the nearest sweep at most this far in time (default {max_dt_s:g} = "
                             f"{max_dt_s * 1000:g} ms)")
    topics.add_argument("--rectified", choices=("auto", "yes", "no"), default="auto",
                        help="project with CameraInfo P (rectified images) or K and D (raw images); auto: P when D "
                             "is all zero or the image topic is an image_rect* topic")
    written = parser.add_argument_group("what else to write")
    written.add_argument("--write-sparse", action="store_true",
                         help="also write /jarrn/sparse_depth: the projected points (32FC1, NaN = no point)")
    written.add_argument("--copy-input", action="store_true",
                         help="also copy the image, CameraInfo, cloud and /tf topics into OUT (rosbag2 input)")
    written.add_argument("--preview", type=Path, default=None, metavar="DIR",
                         help="write panels of the first frames (image, projected points, depth) to DIR")
    written.add_argument("--preview-count", type=int, default=3, help="how many panels --preview writes (default 3)")
    written.add_argument("--no-progress", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model (as jarrn infer)")
    model.add_argument("--model", default=None, help="engine, ONNX or checkpoint (default: the bundled model)")
    model.add_argument("--backend", choices=BACKEND_NAMES, default=None,
                       help="run on this backend (default: the fastest that can run --model)")
    model.add_argument("--providers", default=None, help="ONNX Runtime execution providers, comma separated")
    model.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    model.add_argument("--cuda-graphs", action="store_true", help="TensorRT only: replay a CUDA graph per size")
    model.add_argument("--server", default=None, metavar="HOST:PORT",
                       help="complete on a running jarrn serve (its gRPC port) instead of a local model")
    return parser


def _options(args: argparse.Namespace):  # noqa: ANN202 - BagOptions, imported after parsing
    from jarrn_deploy.runtime.bag.pipeline import BagOptions

    if not args.max_dt > 0:
        raise UsageError(f"--max-dt: expected a positive number of seconds, got {args.max_dt}")
    if args.preview_count < 1:
        raise UsageError(f"--preview-count: expected at least 1, got {args.preview_count}")
    if args.server and (args.model or args.backend):
        raise UsageError("--server: the server's model runs the frames, so --model and --backend do not apply")
    return BagOptions(input=args.input, out=args.out, storage=args.storage, overwrite=args.overwrite,
                      image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
                      cloud_topic=args.cloud_topic, extrinsics=args.extrinsics, max_dt_s=args.max_dt,
                      rectified=args.rectified, write_sparse=args.write_sparse, copy_input=args.copy_input,
                      preview_count=args.preview_count if args.preview else 0, progress=not args.no_progress)


def _completer_factory(args: argparse.Namespace):  # noqa: ANN202
    """``(make_completer, caption)``: the backend is chosen now (a bad --model or --backend fails before the bag is
    read), the model loads when the run calls ``make_completer()``; ``caption[0]`` names what completed the frames
    (with the model's precision once it has loaded)."""
    if args.server:
        from jarrn_deploy.runtime.bag.remote import RemoteCompleter, parse_server
        from jarrn_deploy.runtime.backends.registry import cli_option_owners

        parse_server(args.server)
        for flag in cli_option_owners():
            if getattr(args, flag.lstrip("-").replace("-", "_"), None):
                ignored_option(flag, f"the model of the jarrn serve at {args.server} runs the frames")
        return (lambda: RemoteCompleter(args.server)), [f"jarrn serve at {args.server}"]
    from jarrn_deploy.model.atomic import check_input_file
    from jarrn_deploy.runtime.infer import (BUNDLED, backend_options, build_completer, choose_backend, model_precision,
                                            resolve_model, warn_ignored_backend_options)

    if args.model is not None:
        check_input_file(Path(args.model), "--model", "a checkpoint, ONNX or engine file")
    backend, model, _ = choose_backend(args.model, args.backend)
    warn_ignored_backend_options(args, backend)
    label = Path(args.model).name if args.model else BUNDLED
    caption = [f"{backend}, model {label}"]

    def make_completer():  # noqa: ANN202 - a DepthCompleter
        model_file = resolve_model(backend, model)
        completer = build_completer(backend, model_file, backend_options(
            backend, providers=args.providers, device=args.device, cuda_graphs=args.cuda_graphs))
        precision = model_precision(backend, model_file)
        caption[0] = f"{backend} {precision.upper()}, model {label}"
        return completer

    return make_completer, caption


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    repeated_options(parser, argv)
    from jarrn_deploy.runtime.bag.output import DEPTH_TOPIC, check_out
    from jarrn_deploy.runtime.bag.pipeline import run_bag
    from jarrn_deploy.runtime.bag.source import import_rosbags

    options = _options(args)
    check_out(options.out, options.overwrite, options.input)  # before any work: OUT never replaces IN
    import_rosbags()
    make_completer, caption = _completer_factory(args)
    if args.preview is not None:
        from jarrn_deploy.model.atomic import check_writable_folder

        check_writable_folder(args.preview, "--preview", create=False)
    summary = run_bag(options, make_completer)
    caption = caption[0]
    for line in summary.lines(options.max_dt_s):
        print(line, file=sys.stderr)
    print(f"wrote {options.out}: {summary.completed} {DEPTH_TOPIC} images (32FC1 metres, NaN = no depth) from "
          f"{summary.topics.image} and {summary.topics.cloud}, {caption}")
    if args.preview and summary.previews:
        from jarrn_deploy.runtime.bag.preview import write_previews

        written = write_previews(args.preview, summary.previews, caption, summary.topics.image)
        print("wrote " + ", ".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
