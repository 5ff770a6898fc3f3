"""tests/support/progress.py: the tests' own waits end when the work stops making progress (the stages' stall rule),
not at a guessed number of seconds. Real child processes, a stall limit of a few seconds."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from stable_verl.launch import procs, stall
from tests.support.progress import NoProgress, Output, run, wait_for

STALL_S = 2.5
BURN = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end: pass\n"


@pytest.fixture(autouse=True)
def fast_samples(monkeypatch):
    monkeypatch.setattr(stall, "SAMPLE_S", 0.5)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_child_that_prints_then_hangs_is_stopped_with_its_last_lines_and_its_tree_killed(tmp_path):
    pid_file = tmp_path / "grandchild"
    code = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "print('loading the model', flush=True)\n"
        "time.sleep(600)\n"
    )
    start = time.monotonic()
    with pytest.raises(NoProgress) as err:
        run(_python(code), stall_s=STALL_S)
    assert STALL_S <= time.monotonic() - start < STALL_S + 20  # the limit, a sample, a poll, the kill
    assert "stalled: no new step, log line or CPU use for 2 s (stall_s)" in str(err.value)
    assert str(err.value).endswith("loading the model")
    assert not procs.tree(int(pid_file.read_text())), "the child's child outlived the stall"


def test_a_busy_silent_child_is_not_stopped_and_its_output_is_captured():
    code = BURN.format(s=2 * STALL_S) + "print('out')\nimport sys\nprint('err', file=sys.stderr)\nsys.exit(3)\n"
    start = time.monotonic()
    done = run(_python(code), stall_s=STALL_S)
    assert time.monotonic() - start >= 2 * STALL_S
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    with pytest.raises(subprocess.CalledProcessError):
        run(_python("import sys; sys.exit(1)"), stall_s=STALL_S, check=True)


def test_a_slow_idle_child_that_prints_new_lines_completes():
    # Idle between lines (a slow machine): 5 new lines, one every second, twice the limit in all.
    code = "import time\nfor w in 'abcde':\n    time.sleep(1.0)\n    print('phase ' + w, flush=True)\n"
    done = run(_python(code), stall_s=STALL_S)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "phase e"


def test_the_total_limit_is_optional_and_stops_a_busy_child():
    with pytest.raises(NoProgress, match=r"timed out after 2 s \(timeout_s\)"):
        run(_python(BURN.format(s=60)), stall_s=STALL_S, timeout_s=2)


def test_wait_for_a_condition_that_comes_true_late_while_the_tree_works(tmp_path):
    # The leader sleeps while its child computes for twice the limit, then writes the file waited for.
    marker = tmp_path / "ready"
    burn = BURN.format(s=2 * STALL_S) + f"open({str(marker)!r}, 'w').write('ok')\n"
    child = subprocess.Popen(_python(f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {burn!r}])\n"))
    try:
        start = time.monotonic()
        assert wait_for(marker.is_file, what="the marker file", stall_s=STALL_S, watch_pids=[child.pid])
        assert time.monotonic() - start >= 2 * STALL_S - 1
    finally:
        child.kill()
        child.wait()


def test_wait_for_fails_naming_what_when_nothing_progresses(tmp_path):
    sleeper = subprocess.Popen(_python("import time; time.sleep(600)"))
    try:
        start = time.monotonic()
        with pytest.raises(NoProgress, match=r"^waiting for the marker file: stalled: .* for 2 s \(stall_s\)$"):
            wait_for((tmp_path / "ready").is_file, what="the marker file", stall_s=STALL_S, watch_pids=[sleeper.pid])
        assert STALL_S <= time.monotonic() - start < STALL_S + 10
    finally:
        sleeper.kill()
        sleeper.wait()


def test_wait_for_a_progress_token_goes_on_while_it_changes_and_fails_when_it_stops(tmp_path):
    log = tmp_path / "log"
    log.write_text("")
    writer = "import sys, time\nfor i in range(6):\n    time.sleep(1.0)\n    open(sys.argv[1], 'a').write('x')\n"
    child = subprocess.Popen([*_python(writer), str(log)])
    try:
        size = lambda: log.stat().st_size  # noqa: E731
        assert wait_for(lambda: size() >= 6, what="six bytes", stall_s=STALL_S, progress=size)  # idle, growing
        with pytest.raises(NoProgress, match="waiting for a seventh byte"):
            wait_for(lambda: size() >= 7, what="a seventh byte", stall_s=STALL_S, progress=size)
    finally:
        child.kill()
        child.wait()


def test_wait_for_fails_at_once_when_every_watched_process_has_ended():
    child = subprocess.Popen(_python("pass"))
    child.wait()
    start = time.monotonic()
    with pytest.raises(NoProgress, match=r"waiting for the server: every watched process ended"):
        wait_for(lambda: False, what="the server", stall_s=60, watch_pids=[child.pid])
    assert time.monotonic() - start < 10
    with pytest.raises(ValueError, match="watch_pids or progress"):
        wait_for(lambda: False, what="anything")


# The main thread ends first; the process is still running (another thread) and cannot be waited for until it exits.
MAIN_THREAD_ENDS_FIRST = """
import ctypes, os, threading, time
threading.Thread(target=lambda: (time.sleep(2), os._exit(0))).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def test_a_process_whose_main_thread_ended_first_is_live_until_it_exits():
    """Its main thread shows as a zombie while it exits (seen: a flow on SIGTERM in make test, 2026-12-05)."""
    child = subprocess.Popen(_python(MAIN_THREAD_ENDS_FIRST))
    wait_for(
        lambda: procs.tree(child.pid) and _state(child.pid) == "Z",
        what="the main thread's end",
        stall_s=60,
        watch_pids=[child.pid],
    )
    assert child.poll() is None and procs.tree(child.pid) == {child.pid}
    assert wait_for(lambda: child.poll() is not None, what="its exit", stall_s=60, watch_pids=[child.pid])
    assert child.returncode == 0 and procs.tree(child.pid) == set()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_output_awaits_a_line_while_lines_come_and_fails_with_the_last_ones():
    # Idle throughout, one new line a second for twice the limit, then the line awaited; then silence.
    code = "import time\nfor i in range(5):\n    print(f'phase {i}', flush=True)\n    time.sleep(1.0)\n"
    code += "print('verl started: pid 42', flush=True)\ntime.sleep(600)\n"
    with subprocess.Popen(_python(code), stdout=subprocess.PIPE, text=True) as child:  # the exit closes the pipe
        try:
            out = Output(child.stdout)
            assert out.wait_for(r"verl started: pid (\d+)", what="verl to start", stall_s=STALL_S)[1] == "42"
            with pytest.raises(NoProgress, match=r"(?s)^waiting for a line never printed: stalled: .*pid 42$"):
                out.wait_for("never", what="a line never printed", stall_s=STALL_S, watch_pids=[child.pid])
            child.kill()
            with pytest.raises(NoProgress, match=r"waiting for another line: the output ended"):
                out.wait_for("never", what="another line", stall_s=60)
        finally:
            child.kill()
