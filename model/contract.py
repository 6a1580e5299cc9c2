"""The tensor contract shared by every backend: names, layout, units, padding and depth normalisation.

User side (numpy): RGB as uint8 ``HxWx3`` (or float in [0,1]), sparse depth in metres as ``HxW`` float (0 = missing),
batches with a leading ``B``. :func:`prepare_inputs` validates and converts them to the graph inputs below, and
:func:`depth_to_user` converts the graph output back; every backend (PyTorch, ONNX Runtime, TensorRT) uses these two.

Graph side (what :class:`MetricJarrn` computes and what the ONNX export contains):
  inputs  ``rgb``          float32 ``[B,3,H,W]`` in [0,1]
          ``sparse_depth`` float32 ``[B,1,H,W]`` metres, 0 = missing
  output  ``depth``        float32 ``[B,1,H,W]`` metres (aux: ``coarse``, ``scale``, ``offset``, ``prob``, network domain)
Inside: validity mask ``sparse > 0``; per-image normalisation of the sparse depth ('max': divide by the largest
sparse depth; 'minmax': map [min, max] of the sparse depth to [0, 1]); padding to a multiple of 64 (RGB by edge
replication, sparse depth and mask with zeros = missing); for models configured with ``sparse_fill='pushpull'``, the
empty pixels of the sparse channel filled by :func:`pushpull_fill` (the mask is unchanged); the network; cropping
back; de-normalisation to metres.

Refused on the user side, with one rule for every entry point (the API, ``jarrn infer``, the server): a sparse map
(or any item of a batch) without a single point > 0 (:class:`EmptySparseDepthError`: metric depth needs at least one
measured point; the network's relative mode, which the graph still computes for such an item, stays internal to
training), and a graph output that is not finite (:class:`NonFiniteDepthError`, raised by :func:`depth_to_user`
naming the model file: NaN is never returned as depth).
"""

from __future__ import annotations

# This module is numpy only, so the thin runtime imports it without torch. The in-graph half (normalisation, padding,
# push-pull fill, MetricJarrn) lives in model.metric_jarrn.

from dataclasses import dataclass

import numpy as np

from jarrn_deploy.errors import CheckFailedError, InputError

DOWNSAMPLING_FACTOR = 64
"""The network's six stride-2 convolutions: the graph pads height and width to a multiple of this."""

CONTRACT_VERSION = "1"


@dataclass(frozen=True)
class TensorContract:
    """Names and conventions every backend shares."""

    rgb_name: str = "rgb"
    """Graph input: float32 [B,3,H,W], RGB order, values in [0,1]."""
    sparse_name: str = "sparse_depth"
    """Graph input: float32 [B,1,H,W], metres, 0 = missing."""
    depth_name: str = "depth"
    """Graph output: float32 [B,1,H,W], metres."""
    aux_names: tuple[str, ...] = ("coarse", "scale", "offset", "prob")
    """Optional graph outputs (network domain), in this order after ``depth``."""
    pad_multiple: int = DOWNSAMPLING_FACTOR
    """Inputs are padded inside the graph to a multiple of this and cropped back."""
    max_plausible_depth_m: float = 1000.0
    """Sparse depth above this is rejected as raw sensor units (e.g. uint16 millimetres) rather than metres."""
    version: str = CONTRACT_VERSION
    """Bumped whenever any convention above changes."""

    @property
    def input_channels(self) -> dict[str, int]:
        """Graph input name -> channel count, in the order every backend feeds them (rgb, then sparse depth)."""
        return {self.rgb_name: 3, self.sparse_name: 1}


CONTRACT = TensorContract()


class InputTypeError(InputError, TypeError):
    """A user input of the wrong type (a list, a masked array, np.matrix): a TypeError, exit status 3."""


class EmptySparseDepthError(InputError):
    """A sparse depth map, or an item of a batch, without a single point > 0 (exit status 3): metric depth needs at
    least one measured point. ``items`` holds the indices of the empty batch items (``[0]`` for one image)."""

    def __init__(self, message: str, items: tuple[int, ...] = (0,)) -> None:
        super().__init__(message)
        self.items = tuple(items)


class NonFiniteDepthError(CheckFailedError):
    """The model produced NaN or infinite depth (exit status 6): its weights are unusable, whatever the input."""


# ---------------------------------------------------------------------------------------------------------------------
# numpy side: validation and layout conversion, shared by every backend


def _check_array(value: object, name: str) -> np.ndarray:
    """A plain numpy array (not a list, masked array or np.matrix, whose semantics would be silently lost)."""
    if isinstance(value, np.ma.MaskedArray):
        hint = "np.ma.filled(a, 0): 0 marks missing depth" if name == "sparse_depth" else "np.ma.getdata(a)"
        raise InputTypeError(f"{name}: expected a plain numpy array, got a masked array; convert it first ({hint})")
    if isinstance(value, np.matrix):
        raise InputTypeError(f"{name}: expected a plain numpy array, got np.matrix; use np.asarray(a)")
    if not isinstance(value, np.ndarray):
        raise InputTypeError(f"{name}: expected a numpy array, got {type(value).__name__}")
    return value


def _check_not_empty(name: str, shape: tuple[int, ...], original: tuple[int, ...]) -> None:
    if 0 in shape:
        raise InputError(f"{name}: empty array of shape {original}; expected at least one image of 1x1 pixels")


def _as_batched_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = _check_array(rgb, "rgb")
    original = tuple(rgb.shape)
    if rgb.ndim == 3:
        rgb = rgb[None]
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        hint = " (channels first? transpose to HxWx3)" if rgb.ndim == 4 and rgb.shape[1] == 3 else ""
        raise InputError(f"rgb: expected HxWx3 or BxHxWx3 (RGB, channels last), got shape {original}{hint}")
    _check_not_empty("rgb", rgb.shape, original)
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float32) / 255.0
    if not np.issubdtype(rgb.dtype, np.floating):
        raise InputError(f"rgb: expected uint8 (0..255) or float in [0,1], got dtype {rgb.dtype}")
    if not np.isfinite(rgb).all():  # checked before the float32 cast, which turns huge float64 values into inf
        raise InputError("rgb: contains NaN or inf")
    low, high = float(rgb.min()), float(rgb.max())
    if low < 0.0 or high > 1.0:
        raise InputError(
            f"rgb: float input must lie in [0,1], got values in [{low:.8g}, {high:.8g}] (pass uint8 for 0..255 images)"
        )
    return rgb.astype(np.float32, copy=False)


def _as_batched_sparse(sparse: np.ndarray) -> np.ndarray:
    sparse = _check_array(sparse, "sparse_depth")
    original = tuple(sparse.shape)
    if sparse.ndim == 2:
        sparse = sparse[None]
    if sparse.ndim == 4 and sparse.shape[1] == 1:
        sparse = sparse[:, 0]
    if sparse.ndim != 3:
        raise InputError(f"sparse_depth: expected HxW or BxHxW metres, got shape {original}")
    _check_not_empty("sparse_depth", sparse.shape, original)
    if not np.issubdtype(sparse.dtype, np.floating):
        raise InputError(
            f"sparse_depth: expected float metres, got dtype {sparse.dtype}; raw depth PNGs must be converted first "
            "(model.depth_io.read_depth_png: KITTI value/256, TUM value/5000, millimetres value/1000)"
        )
    # Checked on the caller's dtype: a float64 1e300 is a huge value, not the inf it becomes in float32.
    if not np.isfinite(sparse).all():
        raise InputError("sparse_depth: contains NaN or inf; mark missing depth with 0")
    if sparse.min(initial=0.0) < 0.0:
        raise InputError(f"sparse_depth: negative depth ({float(sparse.min()):.6g} m); mark missing depth with 0")
    if sparse.max(initial=0.0) > CONTRACT.max_plausible_depth_m:
        raise InputError(
            f"sparse_depth: values up to {float(sparse.max()):.6g} look like raw sensor units, not metres "
            f"(limit {CONTRACT.max_plausible_depth_m:g} m); divide by the sensor's scale (KITTI 256, TUM 5000, mm 1000)"
        )
    return sparse.astype(np.float32, copy=False)


def _drop_channel_axis(rgb: object, sparse: object) -> object:
    """An ``HxWx1`` (or ``BxHxWx1``) sparse map beside an ``HxWx3`` (``BxHxWx3``) RGB of the same size is ``HxW``
    (``BxHxW``) with a channel axis, never a batch of H images of width 1."""
    if (isinstance(sparse, np.ndarray) and isinstance(rgb, np.ndarray) and sparse.ndim == rgb.ndim in (3, 4)
            and sparse.shape[-1] == 1 and sparse.shape[:-1] == rgb.shape[:-1]):
        return sparse[..., 0]
    return sparse


def check_has_points(sparse: np.ndarray, was_batched: bool) -> None:
    """:class:`EmptySparseDepthError` when an image of ``sparse`` (``[B,...]``) has no point > 0."""
    empty = tuple(int(i) for i in np.flatnonzero(~(sparse.reshape(len(sparse), -1) > 0).any(axis=1)))
    if not empty:
        return
    where = (f"batch item{'s' if len(empty) > 1 else ''} {', '.join(map(str, empty[:8]))}"
             f"{' ...' if len(empty) > 8 else ''} of {len(sparse)} {'have' if len(empty) > 1 else 'has'}"
             if was_batched else "the map has")
    raise EmptySparseDepthError(
        f"sparse_depth: {where} no valid point (no value > 0); metric depth needs at least one measured point", empty)


def prepare_inputs(rgb: np.ndarray, sparse_depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate user inputs and return graph inputs ``(rgb [B,3,H,W], sparse_depth [B,1,H,W], was_batched)``.

    Raises :class:`jarrn_deploy.errors.InputError` (a ValueError) or TypeError naming the argument; an image without a
    sparse point gets :class:`EmptySparseDepthError`, checked last (after sizes, types and values)."""
    was_batched = rgb.ndim == 4 if isinstance(rgb, np.ndarray) and not isinstance(rgb, np.matrix) else False
    rgb_b = _as_batched_rgb(rgb)
    sparse_b = _as_batched_sparse(_drop_channel_axis(rgb, sparse_depth))
    if rgb_b.shape[:3] != sparse_b.shape:
        raise InputError(
            f"rgb and sparse_depth: sizes differ, rgb is {rgb_b.shape[1]}x{rgb_b.shape[2]} (batch {rgb_b.shape[0]}), "
            f"sparse_depth is {sparse_b.shape[1]}x{sparse_b.shape[2]} (batch {sparse_b.shape[0]})"
        )
    check_has_points(sparse_b, was_batched)
    rgb_nchw = np.ascontiguousarray(rgb_b.transpose(0, 3, 1, 2))
    return rgb_nchw, np.ascontiguousarray(sparse_b[:, None]), was_batched


def check_finite_depth(depth: np.ndarray, source: object = None) -> None:
    """:class:`NonFiniteDepthError` naming the model file ``source`` when ``depth`` holds NaN or inf."""
    if np.isfinite(depth).all():
        return
    bad = int(depth.size - np.isfinite(depth).sum())
    model = f"the model file {source}" if source else "the model"
    raise NonFiniteDepthError(
        f"{model} produces non-finite depth ({bad} of {depth.size} values NaN or inf): its weights are unusable "
        "(corrupt, or from a diverged training run); nothing was returned as depth")


def depth_to_user(depth: np.ndarray, was_batched: bool, source: object = None) -> np.ndarray:
    """Graph output ``[B,1,H,W]`` to ``BxHxW`` (batched input) or ``HxW`` float32 metres; NaN or inf raises
    :class:`NonFiniteDepthError` naming ``source`` (the model file, when known)."""
    depth = np.asarray(depth, dtype=np.float32)[:, 0]
    check_finite_depth(depth, source)
    return depth if was_batched else depth[0]
