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
"""

from stable_verl.pipeline.site.build import (
    SITE_URL_ENV,
    SiteSummary,
    build_site,
    comparison_page_path,
    page_url,
    refresh_comparison,
    refresh_run,
    run_page_path,
    write_comparison_page,
    write_root_index,
    write_run_page,
)

__all__ = [
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
]
