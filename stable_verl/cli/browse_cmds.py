"""``stable-verl runs|comparisons ...``: browse the artifact store (runs, checkpoints, metrics, reports)."""

from __future__ import annotations

import argparse

from rich.text import Text

from stable_verl.cli.tables import console, fmt, frame_table, heading, kv_table


def _store(args: argparse.Namespace):
    from stable_verl.site import store_reader

    return store_reader.open_store(args.store)


def _listing(frame, what: str, where: str, fold: str) -> int:
    """A table of ``what`` in the store at ``where`` (``fold``: the long column), or one line if there is none."""
    if frame.empty:
        console.print(Text(f"no {what} in {where}"))
    else:
        console.print(frame_table(frame, title=f"{what.split()[-1]} in {where}", fold=(fold,)))
    return 0


def cmd_runs_list(args: argparse.Namespace) -> int:
    from stable_verl.site import store_reader, views

    store = _store(args)
    kind = f"{args.kind} " if args.kind else ""
    return _listing(views.runs_frame(store, args.kind), f"{kind}runs", store_reader.describe_store(store), "parent")


def cmd_runs_show(args: argparse.Namespace) -> int:
    import yaml

    from stable_verl.site import views

    store = _store(args)
    info = views.run_details(store, args.run_id)
    heading(f"run {info['run_id']}")
    console.print(Text(f"folder: {info['uri']}"))
    if info["run"] is None:
        console.print(Text("run.json: missing or unreadable (the run never got going, or it is being written)"))
    else:
        console.print(kv_table(info["run"], title="run.json"))
    if info["config"] is not None:
        heading("config.yaml")
        text = info["config"] if isinstance(info["config"], str) else yaml.safe_dump(info["config"], sort_keys=False)
        console.print(Text(text.rstrip()), soft_wrap=True)
    if info["command"]:
        overrides = info["command"].get("overrides") or []
        heading(f"command.json ({len(overrides)} arguments)")
        for item in overrides:
            console.print(Text(f"  {item}"), soft_wrap=True)
    ckpts = info["checkpoints"]
    if ckpts.empty:
        console.print(Text("checkpoints: none"))
    else:
        done = int(ckpts["complete"].sum())
        title = f"checkpoints ({done} complete, {len(ckpts) - done} incomplete)"
        console.print(frame_table(ckpts, title=title, fold=("uri",)))
    metrics = info["metrics"]
    if not metrics["rows"]:
        console.print(Text("metrics: none"))
    else:
        shown = metrics["highlights"] or dict(list(metrics["values"].items())[:20])
        title = f"metrics: {metrics['rows']} rows, last step {fmt(metrics['step'])}"
        console.print(kv_table(shown, title=title))
    evals, pending = info["evals"], info["evals_incomplete"]
    note = f" ({pending} incomplete, not shown)" if pending else ""
    if evals.empty:
        console.print(Text(f"evaluations: none{note}"))
    else:
        console.print(frame_table(evals, title=f"evaluations{note}"))
    return 0


def cmd_comparisons_list(args: argparse.Namespace) -> int:
    from stable_verl.site import store_reader, views

    store = _store(args)
    return _listing(views.comparisons_frame(store), "comparisons", store_reader.describe_store(store), "uri")


def cmd_comparisons_show(args: argparse.Namespace) -> int:
    from stable_verl.site import views

    store = _store(args)
    info = views.comparison_details(store, args.comparison_id)
    state = "complete" if info["complete"] else "incomplete: no valid _MANIFEST.json yet, files may be partial"
    heading(f"comparison {info['comparison_id']} ({state})")
    console.print(Text(f"folder: {info['uri']}"))
    console.print(Text(f"report: {info['report'] or 'missing'}"))
    table = info["table"]
    if table is None:
        console.print(Text("table.csv: missing"))
    elif table.empty:
        console.print(Text("table.csv: empty"))
    else:
        console.print(frame_table(table, title="table.csv"))
    console.print(Text("plots:" + ("" if info["plots"] else " none")))
    for plot in info["plots"]:
        console.print(Text(f"  {plot}"), soft_wrap=True)
    console.print(Text("runs:" + ("" if info["runs"] else " not recorded")))
    for run in info["runs"]:
        console.print(Text(f"  {run}"), soft_wrap=True)
    for other in info["files"]:
        console.print(Text(f"other: {other}"), soft_wrap=True)
    return 0


def cmd_comparisons_publish(args: argparse.Namespace) -> int:
    from stable_verl.reports.grid_page import write_page

    page = write_page(_store(args), args.comparison_id, args.out)
    console.print(Text(f"wrote {page} (+ {page.with_suffix('')}/: plots, table.csv, claims.csv, grid.json)"))
    return 0


def cmd_comparisons_from_record(args: argparse.Namespace) -> int:
    from stable_verl.config.params import StabilityGridParams
    from stable_verl.reports.grid_from_record import report_from_record
    from stable_verl.train.experiment import grid_graph

    params = StabilityGridParams.from_config(args.config, args.set)
    (init_run,) = grid_graph(params).init_runs()
    store = _store(args)
    layout = report_from_record(store, params, args.run_ids, init_run)
    console.print(Text(f"comparison {layout.comparison_id}: {layout.uri()}"), soft_wrap=True)
    store_arg = f" --store {args.store}" if args.store else ""
    console.print(Text(f"next: stable-verl comparisons publish {layout.comparison_id}{store_arg} --out FOLDER"))
    return 0


def cmd_comparisons_republish(args: argparse.Namespace) -> int:
    from stable_verl.reports.grid_page import republish

    page = republish(args.folder, args.out)
    console.print(Text(f"wrote {page} (+ {page.with_suffix('')}/: table.csv, claims.csv; plots kept)"))
    return 0
