"""The benchmark's shared pieces, re-exported for the many scripts that import them from here.

Each lives in a module of one concern: :mod:`benchmarks.rows` (rows, sizes), :mod:`benchmarks.arguments` (command-line
values), :mod:`benchmarks.timing` (latency statistics, CPU interference), :mod:`benchmarks.host_memory`,
:mod:`benchmarks.machine` (the machine description) and :mod:`benchmarks.report_files` (atomic JSON; bytes and text
through :mod:`model.atomic`). None imports torch or onnxruntime at module level, so ``python benchmarks/run.py --help``
stays fast and the orchestrating process stays small; the heavy libraries are imported in the per-backend workers.
"""

from __future__ import annotations

from benchmarks.arguments import (  # noqa: F401
    ArgumentError,
    parse_choice_list,
    parse_int_list,
    parse_size,
    parse_sizes,
)
from benchmarks.host_memory import (  # noqa: F401
    peak_rss_mib,
    reset_peak_rss,
    rss_mib,
)
from benchmarks.machine import (  # noqa: F401
    CPU_FEATURES_OF_INTEREST,
    describe_machine,
    load_average,
    machine_tag,
    nvidia_smi_gpus,
    physical_cores,
    usable_cpus,
)
from benchmarks.report_files import (  # noqa: F401
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    to_json,
)
from benchmarks.rows import (  # noqa: F401
    BACKENDS,
    BASELINE_KEY,
    DEFAULT_BATCHES,
    DEFAULT_SIZES,
    KITTI_HW,
    PRECISIONS,
    Row,
    applicable_rows,
    config_key,
    padded_hw,
    size_label,
)
from benchmarks.timing import (  # noqa: F401
    CpuInterference,
    PERCENTILES,
    QUIET_SHARE,
    interference_summary,
    iteration_count,
    latency_stats,
    quiet_stats,
    wait_for_quiet,
)
