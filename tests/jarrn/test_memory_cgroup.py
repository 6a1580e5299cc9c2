"""The memory guard's budget: MemAvailable capped by the limits of the process's OWN cgroup (v2 and v1), read from a
fake /proc and /sys tree, never from this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from jarrn_deploy.errors import EXIT_USAGE, UsageError
from jarrn_deploy.memory import (ENV_SWITCH, TORCH_BYTES_PER_PIXEL_CHANNEL, MemoryGuard, available_host_bytes,
                                 cgroup_room_bytes, guard_disabled)

GIB = 2**30


def _tree(root: Path, cgroup_line: str, files: dict[str, str], mem_available_gib: int = 64) -> Path:
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "meminfo").write_text(f"MemTotal: 1 kB\nMemAvailable: {mem_available_gib * 2**20} kB\n")
    (root / "proc" / "self" / "cgroup").write_text(cgroup_line + "\n")
    for name, text in files.items():
        path = root / "sys" / "fs" / "cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


def test_v2_limit_of_the_own_cgroup_caps_mem_available(tmp_path):
    root = _tree(tmp_path, "0::/system.slice/job.scope", {
        "cgroup.controllers": "memory",
        "memory.max": "max",  # the root level has no limit: the old guard saw only this
        "system.slice/job.scope/memory.max": str(6 * GIB),
        "system.slice/job.scope/memory.current": str(2 * GIB),
        "system.slice/job.scope/memory.stat": f"anon 1\ninactive_file {GIB}\n",
    })
    assert available_host_bytes(root) == 5 * GIB  # 6 GiB limit - (2 GiB used - 1 GiB reclaimable cache)


def test_v2_takes_the_smallest_room_of_the_ancestors(tmp_path):
    root = _tree(tmp_path, "0::/user.slice/a/b", {
        "cgroup.controllers": "memory",
        "user.slice/memory.max": str(3 * GIB), "user.slice/memory.current": str(2 * GIB),
        "user.slice/a/memory.max": "max", "user.slice/a/memory.current": str(GIB),
        "user.slice/a/b/memory.max": str(8 * GIB), "user.slice/a/b/memory.current": str(GIB),
    })
    assert cgroup_room_bytes(root) == GIB


def test_v1_memory_controller_path_is_read(tmp_path):
    root = _tree(tmp_path, "12:cpu,cpuacct:/slurm/job\n11:memory:/slurm/uid_1/job_7", {
        "memory/memory.limit_in_bytes": "9223372036854771712",  # v1's "no limit"
        "memory/memory.usage_in_bytes": str(40 * GIB),
        "memory/slurm/uid_1/job_7/memory.limit_in_bytes": str(4 * GIB),
        "memory/slurm/uid_1/job_7/memory.usage_in_bytes": str(GIB),
        "memory/slurm/uid_1/job_7/memory.stat": "total_inactive_file 0\n",
    })
    assert available_host_bytes(root) == 3 * GIB


def test_no_limit_anywhere_leaves_mem_available(tmp_path):
    root = _tree(tmp_path, "0::/", {"cgroup.controllers": "memory", "memory.max": "max",
                                     "memory.current": str(GIB)}, mem_available_gib=7)
    assert cgroup_room_bytes(root) is None and available_host_bytes(root) == 7 * GIB


def test_guard_refuses_what_the_cgroup_limit_would_kill(tmp_path, monkeypatch):
    import jarrn_deploy.memory

    root = _tree(tmp_path, "0::/job", {"cgroup.controllers": "memory", "job/memory.max": str(GIB),
                                        "job/memory.current": "0"})
    monkeypatch.setattr(jarrn_deploy.memory, "available_host_bytes", lambda: available_host_bytes(root))
    with pytest.raises(MemoryError, match=r"input 4000x4000 \(batch 1\).*1.0 GiB of host memory available"):
        MemoryGuard.for_torch((128, 128, 96, 64, 48, 32, 16), None).check((1, 3, 4000, 4000))


@pytest.mark.parametrize("value,disabled", [("off", True), ("0", True), ("No", True), ("on", False), ("", False),
                                            ("1", False)])
def test_switch_values(monkeypatch, value, disabled):
    monkeypatch.setenv(ENV_SWITCH, value)
    assert guard_disabled() is disabled


def test_junk_switch_value_is_a_usage_error_not_on(monkeypatch):
    monkeypatch.setenv(ENV_SWITCH, "offf")
    with pytest.raises(UsageError, match=f"{ENV_SWITCH}: expected off .* got 'offf'") as info:
        MemoryGuard("torch", None, limit_bytes=GIB, bytes_per_pixel_channel=TORCH_BYTES_PER_PIXEL_CHANNEL).check((1, 3, 64, 64))
    assert info.value.exit_code == EXIT_USAGE
