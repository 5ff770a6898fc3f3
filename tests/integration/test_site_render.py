"""A run's page rendered by a real browser (headless Chromium, Debian's ``chromium`` package): the plot is visible.

The page of a run built by ``build_site`` from a local store is screenshotted; the metrics plot draws its lines in
matplotlib's first colour (C0, #1f77b4), which nothing else on the page uses, so the count of C0 pixels in the
screenshot measures the plot. Control: the same page with its plot file deleted shows (almost) none.
The same page served over HTTP from a moto S3 bucket that allows anonymous reads (as an S3 website or MinIO with
``mc anonymous set download`` serve it) shows its plot too: relative links, and the Content-Types the site sets.
No verl here; slow only because a browser starts (a few seconds). ``make test`` installs chromium.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from stable_verl.artifacts import ArtifactStore
from stable_verl.site import build_site
from tests.support import progress
from tests.support.site_store import RL, populate

pytestmark = pytest.mark.slow

C0 = np.array([31, 119, 180]) / 255  # matplotlib's first colour, the metrics lines
TOLERANCE = 40 / 255


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium; `make test` installs it)")


def screenshot(page: Path | str, out: Path, profile: Path) -> np.ndarray:
    """RGB floats (H, W, 3) of ``page`` (a local file or a URL) rendered 1300 px wide."""
    argv = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={out}",
        "--window-size=1300,1600",
        page.as_uri() if isinstance(page, Path) else page,
    ]
    done = progress.run(argv)
    assert done.returncode == 0 and out.is_file(), done.stderr[-2000:]
    import matplotlib.image

    return matplotlib.image.imread(out)[..., :3]


def c0_pixels(image: np.ndarray) -> int:
    return int((np.abs(image - C0).max(axis=-1) < TOLERANCE).sum())


def test_the_metrics_plot_is_visible_in_chromium(tmp_path):
    root = tmp_path / "artifacts"
    store = ArtifactStore(str(root))
    populate(store, tmp_path / "src")
    build_site(store)
    page = root / "runs" / RL / "index.html"

    shown = c0_pixels(screenshot(page, tmp_path / "page.png", tmp_path / "profile"))
    (root / "runs" / RL / "plots" / "metrics.png").unlink()
    missing = c0_pixels(screenshot(page, tmp_path / "no-plot.png", tmp_path / "profile"))
    assert missing < 50, missing  # a broken image: nothing of the plot's colour
    assert shown > 1000, shown  # the lines of the plot's panels


def test_the_page_served_from_a_bucket_shows_its_plot(moto_s3, tmp_path):
    import boto3

    store = moto_s3.store()
    populate(store, tmp_path / "src")
    build_site(store)
    prefix = store.root_path.split("/", 1)[1]
    public = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}
    public["Resource"] = f"arn:aws:s3:::{moto_s3.bucket}/{prefix}/*"
    s3 = boto3.client("s3", endpoint_url=moto_s3.endpoint_url, region_name="us-east-1")
    s3.put_bucket_policy(Bucket=moto_s3.bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [public]}))
    try:
        url = f"{moto_s3.endpoint_url}/{moto_s3.bucket}/{prefix}/runs/{RL}/index.html"  # no credentials
        shown = c0_pixels(screenshot(url, tmp_path / "page.png", tmp_path / "profile"))
    finally:
        s3.delete_bucket_policy(Bucket=moto_s3.bucket)
    assert shown > 1000, shown
