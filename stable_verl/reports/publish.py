"""The one way a report reaches the store: written locally, uploaded to ``comparisons/<id>/`` (manifest last), its page
refreshed. The cold-start comparison and the stability grid both publish through :func:`publish_report`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stable_verl import site
from stable_verl.artifacts import ArtifactStore, ComparisonLayout


def publish_report(
    store: ArtifactStore, comparison: str, run_uris: Sequence[str], workdir: Path, write: Callable[[Path], Any]
) -> ComparisonLayout:
    """``write(folder)`` the report into ``workdir/comparisons/<comparison>``, then upload that folder to
    ``comparisons/<comparison>/`` (manifest last, recording ``run_uris`` as the runs compared) and refresh the
    comparison's page and the root index."""
    layout = ComparisonLayout(store, comparison)
    local = workdir / "comparisons" / comparison
    write(local)
    store.put_dir(local, layout.prefix, metadata={"runs": list(run_uris)})
    site.refresh_comparison(layout)  # site hook: the comparison's page and the root index
    return layout
