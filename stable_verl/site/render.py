"""The three kinds of page as HTML text: the root index, a run, a comparison.

Pure functions of what :mod:`.store_reader` reads. Every value is escaped with :func:`html.escape` (only :class:`Raw`
fragments built here are inserted as they are), every link is relative to the page (``href="config.yaml"``,
``href="../../index.html"``) and points at an object the page saw in the store, so a page works from a local
folder, a bucket served as a website and a presigned copy alike. Links name ``index.html`` explicitly: S3 and
MinIO serve no index document for a bare prefix.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from stable_verl.artifacts import MANIFEST_NAME
from stable_verl.artifacts.run_record import RunRecord
from stable_verl.site import PAGE
from stable_verl.site.store_reader import ComparisonData, Evaluation, RunData
from stable_verl.site.views import fmt, human_size

RUN_PLOT = "plots/metrics.png"
IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif")
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;max-height:40em;white-space:pre-wrap}
img.plot{max-width:100%;border:1px solid #ddd}.s{padding:1px 6px;border-radius:3px;background:#eee}
.complete{background:#d4f4d4}.failed,.interrupted,.incomplete{background:#f8d4d4}.running{background:#fff2c4}
nav{margin-bottom:1em}footer{margin-top:3em;color:#777;font-size:12px}
"""


class Raw(str):
    """An HTML fragment built by this module: inserted without escaping."""


def esc(value: Any) -> str:
    return value if isinstance(value, Raw) else html.escape(fmt(value), quote=True)


def href(path: str) -> str:
    """A relative link target, each path segment percent-encoded (``#fragment`` kept)."""
    target, _, fragment = path.partition("#")
    return quote(target, safe="/.-_~") + (f"#{quote(fragment)}" if fragment else "")


def a(path: str, text: Any) -> Raw:
    return Raw(f'<a href="{html.escape(href(path), quote=True)}">{esc(text)}</a>')


def status(value: Any) -> Raw:
    word = fmt(value)
    return Raw(f'<span class="s {html.escape(word.lower(), quote=True)}">{html.escape(word)}</span>')


def table(header: Sequence[str] | None, rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> Raw:
    """A table of escaped cells (``Raw`` ones as they are); ``header=None``: a key/value table without a header."""
    head = f"<tr>{''.join(f'<th>{esc(h)}</th>' for h in header)}</tr>" if header else ""
    body = []
    for row in rows:
        cells = "".join(f"<td{' class=n' if i in numeric else ''}>{esc(v)}</td>" for i, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return Raw(f"<table>{head}{''.join(body)}</table>")


def pre(text: str) -> Raw:
    return Raw(f"<pre>{html.escape(text)}</pre>")


def details(summary: str, inner: str) -> Raw:
    return Raw(f"<details><summary>{esc(summary)}</summary>{inner}</details>")


def document(title: str, body: Sequence[str], root: str, generated_at: str) -> str:
    nav = f"<nav>{a(root, 'all runs and comparisons')}</nav>" if root else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>{nav}<h1>{esc(title)}</h1>\n"
        + "\n".join(body)
        + f"\n<footer>Written by stable-verl at {esc(generated_at)}; rebuild with <code>stable-verl site build</code>."
        "</footer></body></html>\n"
    )


def _files(objects: dict[str, int], names: Sequence[str]) -> Raw:
    """Links to those of ``names`` that exist, ``name (size)``."""
    items = [f"<li>{a(n, n)} ({human_size(objects[n])})</li>" for n in names if n in objects]
    return Raw(f"<ul>{''.join(items)}</ul>" if items else "<p>none</p>")


# -------------------------------------------------------------------------------------------------- run
def run_page(data: RunData, has_plot: bool, generated_at: str) -> str:
    rec, objs = data.record or RunRecord(data.run_id), data.objects
    facts = [
        ("status", status(rec.status or "unknown")),
        ("kind", rec.kind),
        ("name", rec.name),
        ("steps", rec.steps),
        ("attempts", rec.attempts),
        ("created", rec.created_at),
        ("updated", rec.updated_at),
        ("CPU", rec.cpu),
    ]
    if data.parent is not None:
        pid, pstep = data.parent
        anchor = f"#step-{pstep}" if pstep else ""
        facts.append(("started from", a(f"../{pid}/{PAGE}{anchor}", rec.parent_checkpoint)))
    elif rec.parent_checkpoint:
        facts.append(("started from", rec.parent_checkpoint))
    if rec.error:
        facts.append(("error", rec.error))
    body = [table(None, facts), _files(objs, ["run.json", "config.yaml", "command.json", "metrics.jsonl"])]

    body.append("<h2>Metrics</h2>")
    if has_plot:
        body.append(f'<p><img class="plot" src="{RUN_PLOT}" alt="metrics of {esc(data.run_id)} by step"></p>')
    summary = data.summary
    if summary.get("rows"):
        shown = summary["highlights"] or dict(list(summary["values"].items())[:20])
        body.append(f"<p>{summary['rows']} rows; last step {esc(summary['step'])}:</p>")
        body.append(table(["metric", "value"], shown.items(), numeric=[1]))
    else:
        body.append("<p>no metrics yet</p>")

    body.append("<h2>Checkpoints</h2>")
    body.append(_checkpoints(data) if data.checkpoints else "<p>none</p>")
    body.append("<h2>Evaluations</h2>")
    body.append(_evaluations(data.evals) if data.evals else "<p>none</p>")
    body.append("<h2>Config</h2>")
    body.append(pre(data.config_text) if data.config_text else "<p>no config.yaml</p>")
    body.append("<h2>Command</h2>")
    if data.command:
        argv = data.command.get("overrides") or []
        body.append(pre(" \\\n  ".join(str(x) for x in argv)))
        rest = {k: v for k, v in data.command.items() if k != "overrides"}
        if rest:
            body.append(pre(json.dumps(rest, indent=2, default=str)))
    else:
        body.append("<p>no command.json</p>")
    logs = sorted(k for k in objs if k.startswith("logs/"))
    body.append("<h2>Logs</h2>")
    body.append(_files(objs, logs))
    return document(f"run {data.run_id}", body, f"../../{PAGE}", generated_at)


def _checkpoints(data: RunData) -> Raw:
    rows, lists = [], []
    for step, folder in data.checkpoints:
        rel = folder.prefix[len(data.prefix) + 1 :]
        manifest = folder.manifest
        state = "complete" if folder.complete else "incomplete"
        rows.append(
            [
                Raw(f'<span id="step-{step}">{step}</span>'),
                status(state),
                len(manifest.files) if manifest else None,
                human_size(manifest.total_size) if manifest else None,
                manifest.created_at if manifest else None,
                a(f"{rel}/{MANIFEST_NAME}", MANIFEST_NAME) if manifest else "no manifest (upload unfinished)",
            ]
        )
        if manifest and folder.complete:
            files = [[a(f"{rel}/{f.path}", f.path), human_size(f.size), f.sha256[:16]] for f in manifest.files]
            lists.append(details(f"global_step_{step}: {len(files)} files", table(["file", "size", "sha256"], files)))
    return Raw(table(["step", "status", "files", "size", "written", "manifest"], rows, numeric=[2, 3]) + "".join(lists))


def _evaluations(evals: list[Evaluation]) -> Raw:
    rows, samples = [], []
    for ev in evals:
        rel = f"eval/global_step_{ev.step}/{ev.benchmark}"
        names = ("results.json", "samples.jsonl", MANIFEST_NAME) if ev.folder.complete else ()
        links = [a(f"{rel}/{n}", n) for n in names]
        results = ev.results or {}
        rows.append(
            [
                ev.step,
                ev.benchmark,
                status("complete" if ev.folder.complete else "incomplete"),
                ev.metric or None,
                ev.value,
                ev.stderr,
                results.get("format_rate"),
                results.get("num_prompts"),
                Raw(" ".join(links)),
            ]
        )
        if ev.samples:
            cols = [c for c in ("prompt", "ground_truth", "response", "score") if any(c in s for s in ev.samples)]
            cells = [[pre(str(s.get(c, ""))) if c == "response" else s.get(c) for c in cols] for s in ev.samples]
            title = f"step {ev.step}, {ev.benchmark}: first {len(ev.samples)} samples"
            samples.append(details(title, table(cols, cells)))
    header = ["step", "benchmark", "status", "metric", "value", "stderr", "format rate", "prompts", "files"]
    return Raw(table(header, rows, numeric=[0, 4, 5, 6, 7]) + "".join(samples))


# ------------------------------------------------------------------------------------------- comparison
def comparison_page(data: ComparisonData, generated_at: str) -> str:
    objs = data.objects
    state = "complete" if data.folder.complete else "incomplete"
    manifest = data.folder.manifest
    body = [
        table(
            None,
            [
                ("status", status(state)),
                ("written", manifest.created_at if manifest else None),
                ("manifest", a(MANIFEST_NAME, MANIFEST_NAME) if MANIFEST_NAME in objs else "none (upload unfinished)"),
            ],
        )
    ]
    body.append("<h2>Runs</h2>")
    items = [f"<li>{a(f'../../runs/{r}/{PAGE}', r) if ok else esc(r)}</li>" for r, ok in data.runs]
    body.append(f"<ul>{''.join(items)}</ul>" if items else "<p>not recorded</p>")
    plots = sorted(k for k in objs if k.startswith("plots/") and k.lower().endswith(IMAGE_SUFFIXES))
    body.append("<h2>Plots</h2>")
    for p in plots:
        body.append(f'<p>{a(p, p)}<br><img class="plot" src="{esc(href(p))}" alt="{esc(p)}"></p>')
    if not plots:
        body.append("<p>none</p>")
    body.append("<h2>Table</h2>")
    if data.table is not None and not data.table.empty:
        body.append(_files(objs, ["table.csv"]))
        cols = list(data.table.columns)
        numeric = [i for i, c in enumerate(cols) if data.table[c].dtype.kind in "fiu"]
        body.append(table(cols, data.table.itertuples(index=False), numeric=numeric))
    else:
        body.append("<p>no table.csv</p>")
    body.append("<h2>Report</h2>")
    body.append(_files(objs, ["report.md"]))
    if data.report:
        body.append(pre(data.report))
    known = {"report.md", "table.csv", MANIFEST_NAME, PAGE, *plots}
    others = sorted(k for k in objs if k not in known)
    body.append("<h2>Other files</h2>")
    body.append(_files(objs, others))
    return document(f"comparison {data.comparison_id}", body, f"../../{PAGE}", generated_at)


# -------------------------------------------------------------------------------------------------- root
def root_page(runs: list[RunRecord], comparisons: list[dict[str, Any]], generated_at: str) -> str:
    known = {r.run_id for r in runs}
    rows = []
    for r in runs:
        pid = next((p for p in (r.parent_checkpoint or "").split("/") if p in known), None)
        rows.append(
            [
                a(f"runs/{r.run_id}/{PAGE}", r.run_id),
                r.kind,
                r.name,
                status(r.status or "unknown"),
                r.steps,
                a(f"runs/{pid}/{PAGE}", pid) if pid else None,
                r.created_at,
                r.updated_at,
            ]
        )
    body = [f"<h2>Runs ({len(runs)})</h2>"]
    header = ["run", "kind", "name", "status", "steps", "started from", "created", "updated"]
    body.append(table(header, rows) if rows else "<p>none</p>")
    body.append(f"<h2>Comparisons ({len(comparisons)})</h2>")
    crows = [
        [
            a(f"comparisons/{c['comparison_id']}/{PAGE}", c["comparison_id"]),
            status("complete" if c["complete"] else "incomplete"),
            c["runs"],
            c["created_at"] or None,
        ]
        for c in comparisons
    ]
    body.append(table(["comparison", "status", "runs", "written"], crows, numeric=[2]) if crows else "<p>none</p>")
    return document("stable-verl artifacts", body, "", generated_at)
