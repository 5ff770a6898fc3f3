"""Progress of a verl subprocess from its log lines: start-up phases once each, then one line per step."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

# verl's console logger prints "step:N - key:value - ..."; the SFT trainer prints the same shape.
_STEP_LINE = re.compile(r"\bstep:(\d+)\b")
# A Python traceback or a raised exception, possibly behind Ray's "(pid=...)" prefix.
_ERROR_LINE = re.compile(r"Traceback \(most recent call last\)|^(\(\S+ pid=\d+\)\s*)?\w*(Error|Exception): ")


def is_step_line(line: str) -> int | None:
    """The step of a verl step line (``step:N`` with a loss or reward on it), else None."""
    m = _STEP_LINE.search(line)
    return int(m.group(1)) if m and ("loss" in line or "reward" in line) else None


# What verl is doing before its first step (Ray, workers, vLLM, weight sync take ~80 s on 2 CPU cores): the first
# log line matching each pattern is echoed once, as "[rl] starting: <phase> (<seconds> s)".
STARTUP_PHASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), phase)
    for pattern, phase in (
        (r"Started a local Ray instance|Connected to Ray cluster", "Ray is up"),
        (r"TaskRunner", "verl task runner started"),
        (r"contains [\d.]+[KMB]? parameters", "model built, wrapping it in FSDP"),
        (r"vLLMHttpServer", "vLLM rollout server starting"),
        (r"Loading safetensors checkpoint shards", "vLLM loading weights"),
        (r"update_weights done", "actor weights synced into vLLM"),
        (r"AgentLoopWorker", "agent-loop workers starting, then step 1"),
    )
)


def progress_printer(
    stage: str,
    total_steps: int,
    echo: Callable[[str], None] = print,
    on_step: Callable[[int], None] | None = None,
) -> Callable[[str], None]:
    """An ``on_line`` callback that echoes verl's start-up phases once each, then one short line per training
    step (and calls ``on_step(step)``)."""

    last_step = 0
    start = time.monotonic()
    seen: set[str] = set()

    def on_line(line: str) -> None:
        nonlocal last_step
        if last_step == 0:
            for pattern, phase in STARTUP_PHASES:
                if phase not in seen and pattern.search(line):
                    seen.add(phase)
                    echo(f"[{stage}] starting: {phase} ({time.monotonic() - start:.0f} s)")
        step = is_step_line(line)
        if step is not None and step > last_step:
            last_step = step
            echo(f"[{stage}] step {last_step}/{total_steps}")
            if on_step is not None:
                on_step(last_step)
        elif _ERROR_LINE.search(line):
            echo(f"[{stage}] {line[:200]}")

    return on_line
