"""Procedural synthetic RGB-D scenes for training JARRN.

Each sample is a small 3D scene (an indoor room or an outdoor street) made of analytic primitives (planes, boxes,
cylinders, spheres) and ray cast through a pinhole camera, so every depth discontinuity lies on a silhouette and hence
on an image edge. Surfaces get a procedural texture (checker, stripes, value noise, planks, bricks, windows, lane
markings) and Lambert + ambient shading from a random directional light.

Pipeline: :func:`sample_scene` draws a :class:`SceneSpec` from ``numpy.random.default_rng(seed)`` (pure Python
floats), then :func:`render` ray casts it over the whole pixel grid with an array-module shim (:class:`NumpyOps` or
:class:`TorchOps`), so the same maths runs with numpy (:func:`generate_scene`) or with torch on any device
(:func:`generate_batch`). Outputs are deterministic per seed.

Conventions: camera frame x right, y down, z forward (OpenCV); world frame y up. Rays are ``(u - cx)/fx, (v - cy)/fy,
1`` in camera coordinates, so the ray parameter of a hit *is* its z-depth. Depth is in metres, 0 = invalid (sky, or a
hit outside the configured depth range, like a range-limited sensor).

Modules: :mod:`.config` (options, sample), :mod:`.scene` (scene description), :mod:`.array_ops` / :mod:`.torch_ops`
(array shims), :mod:`.raycast`, :mod:`.textures`, :mod:`.render`, :mod:`.sampling` (a random scene from a seed:
:mod:`.indoor` rooms, :mod:`.outdoor` streets, built from :mod:`.scene_kit`), :mod:`.generate` (public entry points).
Only :func:`generate_batch` needs torch.
"""

from jarrn_deploy.model.synthetic.config import DEFAULT_CONFIG, KINDS, MIN_SIZE, SceneConfig, SyntheticSample
from jarrn_deploy.model.synthetic.generate import SyntheticBatch, generate_batch, generate_scene

__all__ = [
    "DEFAULT_CONFIG",
    "KINDS",
    "MIN_SIZE",
    "SceneConfig",
    "SyntheticBatch",
    "SyntheticSample",
    "generate_batch",
    "generate_scene",
]
