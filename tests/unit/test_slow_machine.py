"""infra/slow_machine.sh caps a command and every process it starts at SLOW_CPUS cores (the cgroup cpu controller)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import progress

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "slow_machine.sh"

# Two child processes each burn 0.5 s of CPU time: 1 CPU-second in all, so 0.2 cores in all need >= 5 s of wall.
BURN = """
import multiprocessing as mp, time
def burn(_):
    t = time.process_time()
    while time.process_time() - t < 0.5:
        pass
if __name__ == "__main__":
    with mp.Pool(2) as pool:
        pool.map(burn, [0, 1])
"""


def _cgroup_writable() -> bool:
    roots = [Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")]
    return os.geteuid() == 0 and any(os.access(r, os.W_OK) for r in roots if r.is_dir())


@pytest.mark.skipif(not _cgroup_writable(), reason="needs root and a writable cgroup cpu controller")
def test_quota_slows_the_command_and_its_children():
    start = time.monotonic()
    done = progress.run(["bash", str(SCRIPT), sys.executable, "-c", BURN], env={**os.environ, "SLOW_CPUS": "0.2"})
    wall = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert wall >= 4.5, f"1 CPU-second at 0.2 cores took only {wall:.1f} s: the quota did not apply to the children"
    assert "0.2 core(s) in all" in done.stderr
    group = re.search(r"cgroup (\S+)\)", done.stderr)
    assert group and "stable-verl-slow-" in group[1] and not Path(group[1]).exists()  # its group is removed
    # (another slow run on the machine, e.g. `make slow CMD="make demo"`, may hold a group of its own meanwhile)


def test_bad_quota_is_one_line_and_exit_2():
    done = subprocess.run(["bash", str(SCRIPT), "true"], env={**os.environ, "SLOW_CPUS": "x"}, capture_output=True)
    assert done.returncode == 2 and done.stderr.decode().strip().count("\n") == 0
