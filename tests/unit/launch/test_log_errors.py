"""A failed verl run's message names the cause found in its log, not the noise that ends it."""

from __future__ import annotations

from stable_verl.launch.log_errors import error_lines, failure_summary
from stable_verl.launch.runner import _failure

TQ_WARNING = (
    "\x1b[36m(SimpleStorageUnit pid=21609)\x1b[0m 2026-11-28 06:45:17,139 - WARNING - transfer_queue.utils.common - "
    "target_num_threads 8 should not exceed total physical CPU cores 2. Setting to 2."
)
# The end of a real failed main_ppo log (paths shortened), with TransferQueue's warning around it as it comes.
LOG = [
    "\x1b[36m(TaskRunnerV1 pid=5219)\x1b[0m                     'trainer_mode': 'stable_sync'},",
    TQ_WARNING,
    "Error executing job with overrides: ['algorithm.adv_estimator=grpo']",
    "Traceback (most recent call last):",
    '  File "verl/trainer/main_ppo.py", line 93, in run_ppo',
    "    ray.get(runner.run.remote(config))",
    "ray.exceptions.RayTaskError(ActorUnschedulableError): \x1b[36mray::TaskRunnerV1.run()\x1b[39m (pid=5219)",
    "           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
    '  File "transfer_queue/utils/zmq_utils.py", line 674, in process_zmq_server_info',
    "ray.exceptions.ActorUnschedulableError: The actor is not schedulable: The node specified via "
    "NodeAffinitySchedulingStrategy doesn't exist any more or is infeasible, and soft=False was specified.",
    "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.",
    *[TQ_WARNING] * 40,
]


def test_error_lines_are_the_exceptions_without_colour_or_noise():
    assert error_lines(LOG) == [
        "ray.exceptions.RayTaskError(ActorUnschedulableError): ray::TaskRunnerV1.run() (pid=5219)",
        "ray.exceptions.ActorUnschedulableError: The actor is not schedulable: The node specified via "
        "NodeAffinitySchedulingStrategy doesn't exist any more or is infeasible, and soft=False was specified.",
    ]


def test_failure_message_names_the_cause_and_the_log_not_40_warnings(tmp_path):
    log = tmp_path / "attempt-1.log"
    log.write_text("\n".join(LOG) + "\n")
    message = _failure("verl", "exited with code 1", log, LOG[-40:])
    lines = message.splitlines()
    assert lines[0] == f"verl exited with code 1; full log: {log}"
    assert lines[1].startswith("  cause: ray.exceptions.ActorUnschedulableError: The actor is not schedulable")
    assert lines[2].startswith("  first error: ray.exceptions.RayTaskError(ActorUnschedulableError)")
    assert "target_num_threads" not in message and "HYDRA_FULL_ERROR" not in message and "\x1b" not in message


def test_a_log_without_an_exception_still_shows_its_filtered_tail(tmp_path):
    log = tmp_path / "attempt-1.log"
    log.write_text("step 1\nKilled\n")
    summary = failure_summary(log, ["step 1", TQ_WARNING, "Killed"])
    assert "cause" not in summary and summary.splitlines()[-2:] == ["    step 1", "    Killed"]
