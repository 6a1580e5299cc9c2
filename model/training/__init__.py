"""Training JARRN, one concern a module (``python -m jarrn_deploy.model.train`` is the command; see :mod:`jarrn_deploy.model.train`).

- :mod:`.arguments`: the checks every option passes before any work.
- :mod:`.loop`: a run from checked options to the last checkpoint (device, set-up, steps, logs, validation, export).
- :mod:`.data`: where batches come from (host loader workers or the training device).
- :mod:`.samples`: frame sources and the host path's training samples (crop, flip, colour jitter, normalisation).
- :mod:`.rgbd_extra_samples`: ``--data rgbd_extra`` training crops, their mix with synthetic ones, their validation.
- :mod:`.sparse_sampling`: the sparse-input regimes drawn on the host (numpy).
- :mod:`.device_batches`: synthetic batches rendered, sampled and augmented with torch on the training device.
- :mod:`.network_setup`: the network, its starting weights, memory format and moving average.
- :mod:`.step`: one optimisation step. :mod:`.schedule`: the learning rate.
- :mod:`.validation`: real-frame validation and its score. :mod:`.curves`: log.csv, val.csv, history.json, curves.png.
- :mod:`.run_state`: step, history, RNG and last.pt (save and ``--resume``). :mod:`.distributed`: torchrun processes.

Nothing here imports :mod:`jarrn_deploy.model.train` (the command) back.
"""
