"""The stability grid's results page: ``docs/results/stability-grid.md`` + its PNGs and CSVs, from a finished grid.

    python -m flows.stability_grid --config configs/stability_grid.yaml      # runs the grid, prints its id
    stable-verl comparisons publish <comparison id> [--out docs/results]     # writes the page

The page is the grid's report (claims table, figures, per-run table) with what a reader needs to judge it: the
budget (cells, steps, wall time), the regime and every setting (the flow's parameters as run), the command that
made it and the one that rebuilds the page. It is built only from a complete comparison folder in the store
(its manifest is verified on download), so the page and the store cannot disagree.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from stable_verl.artifacts import ArtifactStore, ComparisonLayout

PAGE = "stability-grid"
ASSETS = ("table.csv", "claims.csv", "grid.json")


def _budget(table: pd.DataFrame, settings: dict) -> list[str]:
    params = settings["params"]
    ran = table[~table["skipped"].astype(bool)] if "skipped" in table else table
    verl_h = table["verl_s"].sum() / 3600
    ev = settings.get("timings", {}).get("eval", {})
    return [
        f"- cells: {len(table)} runs = {table['arm'].nunique()} arms x N in {sorted(table['N'].unique().tolist())} "
        f"x seeds {params['seeds']} ({len(ran)} ran in the last flow call, the rest were complete)",
        f"- steps per run: {params['rl']['total_steps']}; checkpoints scored: {params['eval']['steps']}",
        f"- verl wall time summed over runs: {verl_h:.2f} h (start-up {table['startup_s'].sum() / 3600:.2f} h, "
        f"steps {table['steps_s'].sum() / 3600:.2f} h); evaluation in the last flow call "
        f"{ev.get('eval_s', float('nan')):.0f} s ({ev.get('evaluated', '?')} checkpoints; earlier ones were kept)",
        f"- SFT init: `{settings['init_run']}`",
    ]


def _portable(settings: dict) -> dict:
    """``settings`` without store locations (a local store's are paths of the machine that ran the grid)."""
    timings = settings.get("timings", {})
    stages = [{k: v for k, v in stage.items() if k != "run_uri"} for stage in timings.get("stages", [])]
    return {**settings, "timings": {**timings, "stages": stages}}


def write_page(store: ArtifactStore, comparison: str, out_dir: Path) -> Path:
    """Download ``comparisons/<comparison>/`` (verified) and write ``out_dir/stability-grid.md`` + assets."""
    layout = ComparisonLayout(store, comparison)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp)
        store.get_dir(layout.prefix, local)  # IncompleteArtifactError unless the report finished
        settings = _portable(json.loads((local / "grid.json").read_text()))
        table = pd.read_csv(local / "table.csv")
        report = (local / "report.md").read_text()
        assets = out_dir / PAGE
        if assets.exists():
            shutil.rmtree(assets)
        (assets / "plots").mkdir(parents=True)
        for png in sorted((local / "plots").glob("*.png")):
            shutil.copyfile(png, assets / "plots" / png.name)
        for name in ASSETS:
            shutil.copyfile(local / name, assets / name)
        (assets / "grid.json").write_text(json.dumps(settings, indent=1) + "\n")
    title, _, body = report.partition("\n")
    body = body.replace("](plots/", f"]({PAGE}/plots/")
    params = settings["params"]
    lines = [
        title,
        "",
        f"Produced by `python -m flows.stability_grid` (comparison `{comparison}`), page written by "
        f"`stable-verl comparisons publish {comparison}`. Data: [{PAGE}/table.csv]({PAGE}/table.csv) (one row per "
        f"run), [{PAGE}/claims.csv]({PAGE}/claims.csv), every setting in [{PAGE}/grid.json]({PAGE}/grid.json).",
        "",
        "## Budget",
        "",
        *_budget(table, settings),
        "",
        "## Regime (shared by every arm; no arm was tuned on its own)",
        "",
        f"- model: {params['model']}; task: {params['task']}",
        f"- RL (the recipe is each cell's arm, its minibatches the cell's N): "
        f"{ {k: v for k, v in params['rl'].items() if k != 'recipe'} }",
        f"- evaluation: {params['eval']}",
        "",
        body.lstrip("\n"),
        "## Every setting",
        "",
        "```yaml",
        yaml.safe_dump(params, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    page = out_dir / f"{PAGE}.md"
    page.write_text("\n".join(lines))
    return page
