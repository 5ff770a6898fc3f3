"""The verl subprocess runner: streamed logs, loud failures, and no process left behind on timeout."""

from __future__ import annotations

import inspect
import os
import sys
import time

import pytest

from stable_verl.launch.runner import VerlRunError, launch, run_streaming
from stable_verl.launch.stall import DEFAULT_STALL_S


def test_streams_output_to_log_and_callback(tmp_path):
    seen: list[str] = []
    code = "print('step:1 - loss:1.0'); print('step:2 - loss:0.5')"
    result = run_streaming([sys.executable, "-c", code], tmp_path / "x.log", dict(os.environ), 60, on_line=seen.append)
    assert result.returncode == 0
    assert seen == ["step:1 - loss:1.0", "step:2 - loss:0.5"]
    assert "step:2 - loss:0.5" in (tmp_path / "x.log").read_text()


def test_nonzero_exit_raises_with_log_tail(tmp_path):
    code = "import sys; print('about to fail'); sys.exit(3)"
    with pytest.raises(VerlRunError, match="exited with code 3") as err:
        run_streaming([sys.executable, "-c", code], tmp_path / "x.log", dict(os.environ), 60, name="fake-verl")
    assert "about to fail" in str(err.value)


def test_timeout_kills_the_whole_process_group(tmp_path):
    # The child spawns a grandchild that would outlive a plain kill of the child (like Ray daemons).
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "print('hanging', flush=True); time.sleep(600)"
    )
    start = time.monotonic()
    with pytest.raises(VerlRunError, match="timed out after 3 s"):
        run_streaming([sys.executable, "-c", code], tmp_path / "x.log", dict(os.environ), timeout_s=3)
    assert time.monotonic() - start < 30
    grandchild = int(pid_file.read_text())
    time.sleep(0.5)
    assert not _running(grandchild)


def _running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (an orphan nobody reaped in a container still has a pid)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_a_caller_that_names_no_stall_limit_gets_the_stages_default():
    # Every run is stopped when it stops making progress unless its caller turns the rule off (stall_s=None).
    for run in (launch, run_streaming):
        assert inspect.signature(run).parameters["stall_s"].default == DEFAULT_STALL_S
