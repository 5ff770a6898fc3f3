"""A run's metrics as one PNG: its checkpoint scores and the key metrics it logged, one small panel each.

The metrics shown are the ones ``stable-verl runs show`` prints
(:data:`stable_verl.core.metric_keys.KEY_METRIC_PATTERNS`: reward and accuracy, train-inference mismatch, IS weights,
per-token entropy, clipping, length, losses), so the page and the CLI agree on what matters. Drawn with matplotlib's
object API (no pyplot state), so pages can be rendered from the checkpoint-sync thread while another stage renders its
own.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from stable_verl.core.metric_keys import CURVES, REWARD_KEYS
from stable_verl.site.store_reader import flatten_metrics_row, key_metrics

MAX_PANELS = 12
COLUMNS = 4
_LOCK = threading.Lock()  # matplotlib's font cache and mathtext are not documented as thread-safe


def plotted_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Key metrics with at least one finite number in ``rows``: first the reports' curves
    (:data:`~stable_verl.core.metric_keys.CURVES`: the first key of each that the run logged), the training reward
    leading, then the other key metrics in :data:`~stable_verl.core.metric_keys.KEY_METRIC_PATTERNS` order."""
    union: dict[str, Any] = {}
    for row in rows:
        for key, value in row.items():
            if _number(value) is not None:
                union.setdefault(key, value)
    groups = [REWARD_KEYS, *(c.keys for c in CURVES if c.keys != REWARD_KEYS)]
    first = [next((k for k in keys if k in union), None) for keys in groups]
    ordered = [k for k in first if k is not None]
    return ordered + [k for k in key_metrics(union) if k not in ordered]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pairs = sorted(
        (float(r["step"]), v)
        for r in rows
        if isinstance(r.get("step"), int | float) and (v := _number(r.get(key))) is not None
    )
    return [p[0] for p in pairs], [p[1] for p in pairs]


def metrics_png(
    metrics: Sequence[Mapping[str, Any]], scores: Mapping[str, Mapping[int, float]], title: str, dpi: int = 80
) -> bytes | None:
    """PNG bytes of the run's panels, or ``None`` when there is nothing to plot.

    ``metrics``: metrics.jsonl rows (flat, or verl's ``{"step", "data"}``); ``scores``: benchmark -> step -> score
    (the checkpoint evaluations, drawn in the first panel).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = [flatten_metrics_row(dict(r)) for r in metrics]
    keys = plotted_keys(rows)[: MAX_PANELS - (1 if scores else 0)]
    panels = (["scores"] if scores else []) + keys
    if not panels:
        return None
    ncols = min(COLUMNS, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    with _LOCK:
        fig = Figure(figsize=(3.6 * ncols, 2.7 * nrows + 0.4), dpi=dpi)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, panel in zip(axes, panels, strict=False):
            if panel == "scores":
                for i, (bench, by_step) in enumerate(sorted(scores.items())):
                    steps = sorted(by_step)
                    ax.plot(steps, [by_step[s] for s in steps], marker="o", ms=4, color=f"C{i}", label=bench)
                ax.set_title("checkpoint score", fontsize=9)
                ax.legend(fontsize=7, loc="upper left")
            else:
                steps, values = _series(rows, panel)
                ax.plot(steps, values, marker="." if len(steps) < 60 else None, color="C0")
                if "kl" in panel.lower() and values and min(values) > 0:
                    ax.set_yscale("log")
                ax.set_title(panel, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        for ax in axes[len(panels) :]:
            ax.set_axis_off()
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return buf.getvalue()
