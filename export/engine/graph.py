"""What the engine build reads from an ONNX file, without TensorRT: its content hash (external weights included), its
precision (the exporter's metadata, else the graph's ops) and its input shapes, checked against an optimization profile.
Needs ``onnx`` only to read a file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from jarrn_deploy.export.engine.profile import INPUT_CHANNELS, Profile, ProfileError, Shape
from jarrn_deploy.errors import InputError
from jarrn_deploy.export.export_errors import EngineFileError
from jarrn_deploy.export import precision_specs
from jarrn_deploy.model.atomic import file_sha256


def onnx_sha256(path: str | os.PathLike) -> str:
    """sha256 of the ONNX file and, if its weights are stored as external data, of those files too."""
    path = Path(path)
    external = _external_data_files(path)
    if not external:
        return file_sha256(path)
    digest = hashlib.sha256(file_sha256(path).encode())
    for file in external:
        digest.update(file.name.encode())
        digest.update(file_sha256(file).encode())
    return digest.hexdigest()


def _external_data_files(path: Path) -> list[Path]:
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a base dependency
        return []
    model = onnx.load(str(path), load_external_data=False)
    locations = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    locations.add(entry.value)
    return [path.parent / loc for loc in sorted(locations)]


def check_precision(precision: object, source: str) -> str:
    """``precision`` when it is one the exporter produces (:data:`jarrn_deploy.export.precisions.PRECISIONS`), else an
    :class:`EngineFileError` naming ``source`` and the precisions there are."""
    return precision_specs.check_precision(precision, source, EngineFileError)


def precision_from_onnx(model_or_path: Any) -> str:
    """The ONNX graph's precision, one of :data:`jarrn_deploy.export.precisions.PRECISIONS`, as
    :func:`jarrn_deploy.export.precisions.onnx_precision` reads it (the metadata record, else the graph); a record
    naming another precision, or a graph no detector recognises, raises :class:`EngineFileError`."""
    import onnx

    model, source = model_or_path, "the graph"
    if not isinstance(model, onnx.ModelProto):
        model, source = onnx.load(str(model_or_path), load_external_data=False), str(model_or_path)
    try:
        precision = precision_specs.onnx_precision(model, source)
    except InputError as exc:
        raise EngineFileError(str(exc)) from None
    return check_precision(precision, f"{source} (read from its graph)")


def onnx_input_shapes(path: str | os.PathLike) -> dict[str, tuple[int | None, ...]]:
    """Input name -> dims of the ONNX graph (None for a dynamic dim), read without the weights."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initialisers = {t.name for t in model.graph.initializer}
    shapes = {}
    for value in model.graph.input:
        if value.name in initialisers:
            continue
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return shapes


def fixed_profile(input_shapes: dict[str, tuple[int | None, ...]]) -> Profile | None:
    """The one profile a graph with fixed batch, height and width accepts (min = opt = max); None if any is dynamic."""
    fixed = None
    for dims in (input_shapes.get(name, ()) for name in INPUT_CHANNELS):
        if len(dims) != 4 or any(dims[i] is None for i in (0, 2, 3)):
            return None
        shape = Shape(dims[0], dims[2], dims[3])
        if fixed is not None and shape != fixed:
            return None
        fixed = shape
    return Profile.fixed(fixed) if fixed is not None else None


def check_profile_fits_graph(profile: Profile, input_shapes: dict[str, tuple[int | None, ...]], onnx_path: str) -> None:
    """Raise :class:`ProfileError` naming the input and the option when a fixed ONNX dim lies outside the profile."""
    for name in INPUT_CHANNELS:
        dims = input_shapes.get(name)
        if dims is None or len(dims) != 4:
            continue
        for axis, index, low, high in (("batch", 0, profile.min.batch, profile.max.batch),
                                       ("height", 2, profile.min.height, profile.max.height),
                                       ("width", 3, profile.min.width, profile.max.width)):
            fixed = dims[index]
            if fixed is not None and not low == fixed == high:
                shape = "x".join("?" if d is None else str(d) for d in dims)
                raise ProfileError(
                    f"--min/--opt/--max: {onnx_path} has a fixed {axis} of {fixed} (input {name} is {shape}), but the "
                    f"profile asks for {axis} {low}..{high}; leave --min/--opt/--max out for this graph, or export "
                    "it with dynamic shapes (python export/to_onnx.py without --static/--batch)"
                )
