"""Static HTML pages in the artifact store, so a person can browse it with nothing but a web browser.

::

    <root>/index.html                          the runs and the comparisons
    <root>/runs/<run_id>/index.html            status, metrics plotted (plots/metrics.png), checkpoints and their
                                               manifests, evaluation scores and samples, config, command, logs
    <root>/comparisons/<id>/index.html         plots, table, report, the runs compared

Every link is relative and names an object that exists, so the same pages work from a local folder, from a bucket
served as a static website (S3, or MinIO with anonymous read), and as a presigned copy (:mod:`.presign`). Pages are
rewritten when a run's status changes, a checkpoint or an evaluation lands, or a comparison is written
(:func:`refresh_run`, :func:`refresh_comparison`); ``stable-verl site build`` rebuilds them all for any store.

:mod:`.store_reader` is the one store reader (runs, checkpoints, evaluations, comparisons, metrics, with credentials
masked) that the pages and the CLI's ``runs`` / ``comparisons`` views (:mod:`.views`) share.
"""

from typing import Any

PAGE = "index.html"
"""Every page's file name. Links name it explicitly: S3 and MinIO serve no index document for a bare prefix."""
MAX_PRESIGN_S = 7 * 24 * 3600
"""The longest a presigned URL may live (SigV4's limit)."""

#: Functions of :mod:`.build`, loaded on first use so that ``import stable_verl.site`` (the stages' hooks,
#: the CLI's parser) does not load pandas and matplotlib.
_BUILD = (
    "SITE_URL_ENV",
    "SiteSummary",
    "build_site",
    "comparison_page_path",
    "page_url",
    "refresh_comparison",
    "refresh_run",
    "run_page_path",
    "write_comparison_page",
    "write_root_index",
    "write_run_page",
)
__all__ = ["MAX_PRESIGN_S", "PAGE", *_BUILD]


def __getattr__(name: str) -> Any:
    if name in _BUILD:
        from stable_verl.site import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
