"""The stall rule (stable_verl/launch/stall.py): real subprocesses, a stall limit of a few seconds.

A run goes on while it reaches new steps, prints new lines, or its process tree uses (or waits for) CPU; it is
killed when it does none of these for ``stall_s``, and the error names the limit and the last step. A repeated line
is no progress.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from stable_verl.launch import stall
from stable_verl.launch.runner import VerlRunError, run_streaming
from stable_verl.launch.stall import StallWatch

STALL_S = 3.0


@pytest.fixture(autouse=True)
def fast_samples(monkeypatch):
    monkeypatch.setattr(stall, "SAMPLE_S", 0.5)


def _run(tmp_path, code: str, **limits) -> float:
    start = time.monotonic()
    run_streaming([sys.executable, "-c", code], tmp_path / "x.log", dict(os.environ), **limits)
    return time.monotonic() - start


BURN = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end: pass\n"


def test_a_silent_run_that_computes_is_never_stopped(tmp_path):
    # Twice the stall limit without a line, busy: CPU is progress.
    assert _run(tmp_path, BURN.format(s=2 * STALL_S), stall_s=STALL_S) >= 2 * STALL_S


def test_cpu_of_a_child_process_counts(tmp_path):
    # The leader sleeps, silent, while a child computes (torchrun and its trainer, verl and its Ray workers).
    code = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {BURN.format(s=2 * STALL_S)!r}])\n"
    assert _run(tmp_path, code, stall_s=STALL_S) >= 2 * STALL_S


def test_a_run_starved_of_cpu_by_other_work_is_waiting_not_stalled(tmp_path):
    # One core, a busy loop at nice 0 on it, and the run at nice 19 beside it (a long experiment beside a demo): the
    # run gets about 1.5% of the core, below BUSY_CORES, and spends the rest runnable on the run queue. Wanting CPU
    # is progress (procs.runqueue_wait_s): the run is not killed. Counting CPU used alone, it was.
    core = min(os.sched_getaffinity(0))
    pin = f"import os\nos.sched_setaffinity(0, {{{core}}})\n"
    competitor = subprocess.Popen([sys.executable, "-c", pin + BURN.format(s=120)])
    try:
        time.sleep(1.0)
        assert _run(tmp_path, pin + "os.nice(19)\n" + BURN.format(s=2 * STALL_S), stall_s=STALL_S) >= 2 * STALL_S
    finally:
        competitor.kill()
        competitor.wait()


def test_a_slow_run_that_reaches_new_steps_is_never_stopped(tmp_path):
    # Idle between steps (a slow machine, a long rollout), one step every second: 6 s in all, limit 3 s.
    code = "import time\nfor s in range(1, 7):\n    time.sleep(1.0)\n    print(f'step:{s} - loss:1.0', flush=True)\n"
    assert _run(tmp_path, code, stall_s=STALL_S) >= 6


def test_a_silent_hang_is_killed_after_the_stall_limit_naming_the_last_step(tmp_path):
    code = "import time\nfor s in (1, 2):\n    print(f'step:{s} - loss:1.0', flush=True)\ntime.sleep(600)\n"
    start = time.monotonic()
    with pytest.raises(VerlRunError) as err:
        _run(tmp_path, code, stall_s=STALL_S)
    first = str(err.value).splitlines()[0]
    assert "stalled: no new step, log line or CPU use for 3 s (stall_s), last step 2 (stopped)" in first
    assert STALL_S <= time.monotonic() - start < STALL_S + 15  # the limit, a CPU sample, the watchdog's poll, kill


def test_a_hang_that_repeats_one_line_is_killed(tmp_path):
    # A heartbeat is not progress: the same message (digits aside) over and over, no CPU.
    code = "import time\nfor i in range(3000):\n    print(f'waiting for resources ({i} s)', flush=True)\n"
    code += "    time.sleep(0.2)\n"
    start = time.monotonic()
    with pytest.raises(VerlRunError, match=r"stalled: .* for 3 s \(stall_s\), last step 0"):
        _run(tmp_path, code, stall_s=STALL_S)
    assert time.monotonic() - start < STALL_S + 15


def test_new_lines_are_progress(tmp_path):
    # An idle process that keeps printing lines it has not printed before (start-up phases) goes on.
    words = ["ray", "workers", "model", "fsdp", "vllm", "weights", "sync", "agents"]
    code = f"import time\nfor w in {words!r}:\n    print('starting ' + w, flush=True)\n    time.sleep(0.75)\n"
    assert _run(tmp_path, code, stall_s=STALL_S) >= 6


def test_the_total_limit_is_optional_and_stops_a_busy_run(tmp_path):
    with pytest.raises(VerlRunError, match=r"timed out after 2 s \(timeout_s\), last step 0"):
        _run(tmp_path, BURN.format(s=60), stall_s=STALL_S, timeout_s=2)


def test_cpu_threshold_of_a_sample():
    # Fake clock and CPU: a sample counts when the tree used >= BUSY_CORES (0.05) of a core over its interval.
    now, cpu = [0.0], {1: 0.0}
    watch = StallWatch(10, cpu_times=lambda: dict(cpu), clock=lambda: now[0])
    assert watch.check() is None  # t=0: the first sample is the baseline
    now[0], cpu[1] = 0.5, 0.02  # 0.02 CPU s in 0.5 s = 0.04 of a core: idle
    watch.check()
    assert watch.last_progress == 0.0
    now[0], cpu[1], cpu[2] = 1.0, 0.02, 0.025  # a new process with 0.025 CPU s in 0.5 s = 0.05 of a core: busy
    watch.check()
    assert watch.last_progress == 1.0
    now[0] = 11.0  # no sample was busy since t=1, no line: 10 s later it has stalled
    assert watch.check() == "stalled: no new step, log line or CPU use for 10 s (stall_s), last step 0"


def test_cpu_alone_keeps_a_silent_run_alive_only_up_to_silent_s():
    # A hung verl tree polls (0.3-0.5 cores): busy in every sample, but no new step or line. Fake clock, one core busy.
    now, cpu = [0.0], {1: 0.0}
    watch = StallWatch(10, cpu_times=lambda: dict(cpu), clock=lambda: now[0], silent_s=30)
    watch.on_line("step:1 - loss:0.5")  # t=0
    for t in range(5, 65, 5):
        now[0], cpu[1] = float(t), t * 0.4
        if t == 25:
            watch.on_line("[rl] starting: vLLM loading weights")  # a new line at t=25: silent from there
        verdict = watch.check()
        assert (verdict is None) == (t < 55), t
    assert verdict == (
        "stalled: no new step or log line for 30 s though its processes poll the CPU (hung, not slow), last step 1"
    )
    assert StallWatch(10, silent_s=3).silent_s == 10  # never shorter than the stall limit


def test_a_launcher_with_no_tree_to_read_is_judged_by_lines_and_steps():
    # A Ray Job's launcher reads no process tree (cpu_times() gives None): no CPU sample, no crash.
    now = [0.0]
    watch = StallWatch(10, cpu_times=lambda: None, clock=lambda: now[0])
    now[0] = 5.0
    assert watch.check() is None
    watch.on_line("step:1 - loss:0.5")
    now[0] = 14.0
    assert watch.check() is None and watch.last_progress == 5.0
    now[0] = 15.0
    assert watch.check() == "stalled: no new step, log line or CPU use for 10 s (stall_s), last step 1"


def test_lines_steps_and_repeats():
    now = [0.0]
    watch = StallWatch(5, clock=lambda: now[0])
    now[0] = 1.0
    watch.on_line("step:3 - loss:0.5")
    now[0] = 2.0
    watch.on_line("step:2 - loss:0.4")  # an older step (a replayed log) is no progress, nor is its shape new
    assert (watch.last_step, watch.last_progress) == (3, 1.0)
    watch.on_line("(pid=12) waiting 3 s")
    now[0] = 3.0
    watch.on_line("(pid=12) waiting 4 s")  # the same line, digits aside
    assert watch.last_progress == 2.0
    now[0] = 7.0
    assert watch.check() == "stalled: no new step, log line or CPU use for 5 s (stall_s), last step 3"


def test_rays_daemons_are_not_the_runs_cpu():
    venv = "/venv/lib/python3.11/site-packages/ray"
    assert stall.is_ray_daemon([f"{venv}/core/src/ray/gcs/gcs_server", "--log_dir=/tmp/ray"])
    assert stall.is_ray_daemon([f"{venv}/core/src/ray/raylet/raylet", "--raylet_socket_name=x"])
    assert stall.is_ray_daemon(["/venv/bin/python", "-u", f"{venv}/_private/log_monitor.py", "--session-dir=x"])
    assert stall.is_ray_daemon(["/venv/bin/python", f"{venv}/dashboard/dashboard.py", "--host=127.0.0.1"])
    assert not stall.is_ray_daemon(["/venv/bin/python", "-m", "verl.trainer.main_ppo", "ray_kwargs.x=1"])
    assert not stall.is_ray_daemon(["ray::WorkerDict.actor_rollout_init_model"])  # verl's workers are the run


def test_rays_oom_kill_of_workers_ends_the_run_at_once_though_it_stays_busy(tmp_path):
    """The raylet's line for workers killed by its memory monitor (verl then waits on the dead vLLM servers forever):
    the run is stopped at the next check, naming the OOM and the last step, although it keeps using CPU."""
    line = (
        "\\x1b[33m(raylet)\\x1b[0m [2026-12-04 03:42:16,027 E 8518 8518] (raylet) node_manager.cc:3517: 4 Workers "
        "(tasks / actors) killed due to memory pressure (OOM), 0 Workers crashed due to other reasons at node"
    )
    code = f"print('step:3 - loss:1.0', flush=True)\nprint({line!r}, flush=True)\n" + BURN.format(s=600)
    start = time.monotonic()
    with pytest.raises(VerlRunError) as err:
        _run(tmp_path, code, stall_s=300)
    first = str(err.value).splitlines()[0]
    assert "Ray killed 4 of the run's workers for memory pressure (OOM) after step 3" in first
    assert time.monotonic() - start < 30


def test_a_zero_count_of_oom_kills_is_not_fatal():
    watch = StallWatch(stall_s=300)
    watch.on_line("(raylet) 0 Workers (tasks / actors) killed due to memory pressure (OOM), 1 Workers crashed")
    assert watch.check() is None
