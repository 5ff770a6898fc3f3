"""Write the pages into the store: every page at once (:func:`build_site`), or one run / comparison plus the root
index when something changed (:func:`refresh_run`, :func:`refresh_comparison`, called by the pipeline).

Pages are views, derived from the store and rebuilt from it; the store's own records stay the truth. A refresh
that fails (a store hiccup, a half-written file) logs a warning and leaves the stage alone: the next refresh or
``stable-verl site build`` writes the page again. Two stages refreshing the root index at once each write a full
rebuild, so the later one wins and the next refresh catches up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from stable_verl.artifacts import ArtifactStore, ComparisonLayout, RunLayout, list_runs
from stable_verl.artifacts.manifest import utc_now
from stable_verl.env import SITE_URL, site_url
from stable_verl.site import render, store_reader
from stable_verl.site.plots import metrics_png

log = logging.getLogger(__name__)

HTML = "text/html; charset=utf-8"
PNG = "image/png"
SITE_URL_ENV = SITE_URL.name


@dataclass
class SiteSummary:
    """Relative paths of the pages and plots written."""

    pages: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)


def run_page_path(run_id: str) -> str:
    return f"runs/{run_id}/{render.PAGE}"


def comparison_page_path(comparison_id: str) -> str:
    return f"comparisons/{comparison_id}/{render.PAGE}"


def page_url(store: ArtifactStore, rel: str) -> str:
    """Where a person opens the page ``rel``: under ``$STABLE_VERL_SITE_URL`` if set, else a ``file://`` URL
    (local store) or the object's ``s3://`` location (serve the bucket, or see ``stable-verl site presign``)."""
    base = site_url()
    if base:
        return f"{base.rstrip('/')}/{rel}"
    if store.is_local:
        return Path(store.uri(rel)).resolve().as_uri()
    return store.uri(rel)


def write_run_page(store: ArtifactStore, run_id: str, known_runs: set[str] | None = None) -> SiteSummary:
    """(Re)write ``runs/<run_id>/plots/metrics.png`` (when the run has anything to plot), then its page."""
    data = store_reader.run_data(store, run_id, known_runs)
    layout = RunLayout(store, run_id)
    out = SiteSummary()
    scores: dict[str, dict[int, float]] = {}
    for ev in data.evals:
        if ev.folder.complete and isinstance(ev.value, int | float):
            scores.setdefault(f"{ev.benchmark} ({ev.metric})", {})[ev.step] = float(ev.value)
    png = metrics_png(data.metrics, scores, title=run_id)
    if png is not None:
        plot = f"{layout.prefix}/{render.RUN_PLOT}"
        store.write_bytes(plot, png, content_type=PNG)
        out.plots.append(plot)
    page = run_page_path(run_id)
    store.write_text(page, render.run_page(data, png is not None, utc_now()), content_type=HTML)
    out.pages.append(page)
    return out


def write_comparison_page(store: ArtifactStore, comparison_id: str, known_runs: set[str] | None = None) -> str:
    known = known_runs if known_runs is not None else {e["run_id"] for e in list_runs(store)}
    data = store_reader.comparison_data(store, comparison_id, known)
    page = comparison_page_path(comparison_id)
    store.write_text(page, render.comparison_page(data, utc_now()), content_type=HTML)
    return page


def write_root_index(store: ArtifactStore) -> str:
    runs, comparisons = store_reader.root_data(store)
    store.write_text(render.PAGE, render.root_page(runs, comparisons, utc_now()), content_type=HTML)
    return render.PAGE


def build_site(store: ArtifactStore) -> SiteSummary:
    """Every page of the store: one per indexed run, one per comparison folder, then the root index."""
    known = {e["run_id"] for e in list_runs(store)}
    out = SiteSummary()
    for run_id in sorted(known):
        one = write_run_page(store, run_id, known)
        out.pages += one.pages
        out.plots += one.plots
    for cid in store_reader.comparison_ids(store):
        out.pages.append(write_comparison_page(store, cid, known))
    out.pages.append(write_root_index(store))
    return out


# ----------------------------------------------------------------------------------- pipeline hooks
def refresh_run(run: RunLayout) -> None:
    """The run's page and the root index, after its status changed or a checkpoint / evaluation landed.

    Never raises: a page is a view; a failure is logged and the next refresh (or ``site build``) repairs it.
    """
    try:
        write_run_page(run.store, run.run_id)
        write_root_index(run.store)
    except Exception as exc:  # a page is a view: see the docstring
        log.warning("site: could not refresh the page of run %s: %s: %s", run.run_id, type(exc).__name__, exc)


def refresh_comparison(layout: ComparisonLayout) -> None:
    """The comparison's page and the root index, after the comparison was written. Never raises (as above)."""
    try:
        write_comparison_page(layout.store, layout.comparison_id)
        write_root_index(layout.store)
    except Exception as exc:  # as above
        log.warning(
            "site: could not refresh the page of comparison %s: %s: %s", layout.comparison_id, type(exc).__name__, exc
        )
