"""Scene sampling: draw a random indoor room or outdoor street as a :class:`SceneSpec` from a seed."""

from __future__ import annotations

import numpy as np

from jarrn_deploy.model.synthetic.config import SceneConfig
from jarrn_deploy.model.synthetic.indoor import sample_indoor
from jarrn_deploy.model.synthetic.outdoor import sample_outdoor
from jarrn_deploy.model.synthetic.scene import SceneSpec


def sample_scene(seed: int, height: int, width: int, kind: str, config: SceneConfig) -> SceneSpec:
    rng = np.random.default_rng(seed)
    # Always draw the coin, so kind="random" and the kind it picks give the same scene for a seed.
    outdoor = rng.random() < config.outdoor_probability
    if kind != "random":
        outdoor = kind == "outdoor"
    sampler = sample_outdoor if outdoor else sample_indoor
    return sampler(rng, height, width, config)
