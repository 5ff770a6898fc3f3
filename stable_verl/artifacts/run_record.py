"""run.json of a tracked stage, typed: what the run is, where it stands, what it produced.

:func:`stable_verl.train.lifecycle.run_tracked` writes it (``started``, then ``completed`` or ``stopped``,
each merged into the record already there); the pipeline reads it back through :meth:`RunRecord.read`.
:class:`~stable_verl.artifacts.layout.RunLayout` keeps run.json a plain JSON object, so keys other tools add
survive (and ``stable-verl runs`` shows any run.json it finds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stable_verl.artifacts.layout import RunLayout

RUNNING = "running"
COMPLETE = "complete"
FAILED = "failed"
INTERRUPTED = "interrupted"


def cpu_label(platform: Mapping[str, Any] | None) -> str:
    """A run's ``platform`` facts in a few words: 'AVX512, native bf16' / 'AVX2, bf16 emulated' / 'unknown'."""
    if not platform or "cpu_capability" not in platform:
        return "unknown"
    if platform.get("native_bf16"):
        bf16 = "native bf16"
    else:
        bf16 = "bf16 emulated" if platform.get("bf16") else "no native bf16"
    return f"{platform['cpu_capability']}, {bf16}"


@dataclass(frozen=True)
class RunRecord:
    """The fields of run.json that stable-verl writes and reads."""

    run_id: str
    kind: str = ""
    """'sft' or 'rl'."""
    name: str = ""
    """Teacher style (SFT) or recipe (RL)."""
    status: str = ""
    """running | complete | failed | interrupted; ``complete`` is written last."""
    attempts: int = 0
    total_steps: int | None = None
    parent_checkpoint: str | None = None
    """Store path of the checkpoint the stage started from (RL: the SFT run's)."""
    created_at: str = ""
    updated_at: str = ""
    checkpoints: list[int] = field(default_factory=list)
    """Complete checkpoints in the store when the run completed, ascending."""
    latest_step: int | None = None
    resumed_from: int = 0
    """Checkpoint step the completing attempt started from (0: from scratch)."""
    verl_s: float = 0.0
    upload_s: float = 0.0
    download_s: float = 0.0
    error: str | None = None
    """Why the last attempt stopped (failed / interrupted runs)."""
    platform: dict[str, Any] = field(default_factory=dict)
    """The machine of the last attempt: ``cpu_capability`` (torch's, e.g. 'AVX2'), ``native_bf16``, and ``bf16``
    when bf16 compute was emulated in fp32 there. Scores of one run id differ across such machines."""

    @property
    def complete(self) -> bool:
        return self.status == COMPLETE

    @property
    def cpu(self) -> str:
        """The CPU of :attr:`platform` in a few words: 'AVX512, native bf16', 'AVX2, bf16 emulated' ('unknown')."""
        return cpu_label(self.platform)

    @property
    def steps(self) -> str:
        """Progress as listed: ``latest/total`` (``-/16`` until the run completes), or the latest step alone."""
        latest = "-" if self.latest_step is None else str(self.latest_step)
        if self.total_steps:
            return f"{latest}/{self.total_steps}"
        return "" if self.latest_step is None else latest

    @classmethod
    def from_dict(cls, run_id: str, raw: Mapping[str, Any]) -> RunRecord:
        """The record in a run.json object; keys it does not know are ignored, ``run_id`` is the run folder's."""
        known = {f.name for f in dataclasses.fields(cls)} - {"run_id"}
        return cls(run_id=run_id, **{k: v for k, v in raw.items() if k in known})

    @classmethod
    def read(cls, run: RunLayout) -> RunRecord | None:
        """run.json of ``run`` (None if there is none yet)."""
        raw = run.read_run()
        return None if raw is None else cls.from_dict(run.run_id, raw)

    @staticmethod
    def started(
        run: RunLayout,
        kind: str,
        name: str,
        attempt: int,
        total_steps: int,
        parent: str | None,
        platform: Mapping[str, Any] | None = None,
    ) -> None:
        """An attempt starts: merged into the record already there (status ``running``)."""
        fields = {"kind": kind, "name": name, "status": RUNNING, "attempts": attempt, "total_steps": total_steps}
        run.update_run(**fields, parent_checkpoint=parent, **({"platform": dict(platform)} if platform else {}))

    @staticmethod
    def completed(run: RunLayout, checkpoints: list[int], resumed_from: int, **timings: float) -> RunRecord:
        """The stage completed: its checkpoints and timings, status ``complete`` last."""
        run.update_run(
            status=COMPLETE, checkpoints=checkpoints, latest_step=checkpoints[-1], resumed_from=resumed_from, **timings
        )
        return RunRecord.read(run)  # type: ignore[return-value]

    @staticmethod
    def stopped(run: RunLayout, exc: BaseException, local_dir: str | Path | None = None) -> None:
        """An attempt stopped on ``exc``: ``failed`` (an error) or ``interrupted`` (cancelled, Ctrl-C), and why.

        A path under the run's ``local_dir`` (its log, this machine's scratch) is recorded as the same path under the
        run's prefix in the store, where the stage uploads it: no machine's path enters the record."""
        status = FAILED if isinstance(exc, Exception) else INTERRUPTED
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        if local_dir is not None:
            first_line = first_line.replace(str(local_dir), run.prefix)
        run.update_run(status=status, error=f"{type(exc).__name__}: {first_line}"[:500])  # the store scrubs secrets
