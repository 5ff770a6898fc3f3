"""A Ray Job entrypoint's child process with its output teed: to the job's stdout and to a log file on the node.

The SFT and evaluation entrypoints (``train.node_sft``, ``eval.node_eval``) run their work as a child so that its
whole output, vLLM's and torch's included, reaches a file of the node's, which they upload to the store: the Jobs
API's log stream is what the flow sees, and it may not deliver everything of a job whose entrypoint runs on another
node than the head.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TeedExit:
    code: int
    """The child's exit code."""
    signal: int | None = None
    """The signal (SIGTERM: ``ray job stop``; SIGINT) forwarded to the child, if any."""

    @property
    def exit_code(self) -> int:
        """The entrypoint's exit code: 128 + the signal when one stopped it, else the child's."""
        return 128 + self.signal if self.signal is not None else self.code


def run_teed(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> TeedExit:
    """Run ``argv`` until it exits, each line of its stdout and stderr written to this process's stdout and to
    ``log_path`` (created with its folder); SIGTERM and SIGINT received meanwhile are forwarded to it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(
        list(argv), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    stopped: list[int] = []

    def forward(signum: int, _frame) -> None:
        stopped.append(signum)
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with child.stdout, open(log_path, "w", encoding="utf-8") as log:
            for line in child.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                log.write(line)
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return TeedExit(code, stopped[0] if stopped else None)
