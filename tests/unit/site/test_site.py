"""The static pages (stable_verl.site) over a local folder and a real moto S3 server (s3fs over HTTP).

Every ``href``/``src`` of every page must be relative and resolve to an object of the store (a ``#step-N``
fragment to an element of the page it names); no page may name the store's own location or a secret.
"""

from __future__ import annotations

import logging
import posixpath
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from stable_verl.artifacts import ArtifactStore, ComparisonLayout, RunLayout
from stable_verl.cli import main
from stable_verl.site import build_site, page_url, refresh_comparison, refresh_run
from stable_verl.site.presign import page_paths, presign_site, resolve
from tests.support.site_store import CMP, ENV_SECRET, FILE_SECRET, RL, SFT, populate


class Links(HTMLParser):
    """``href``/``src`` values and element ids of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src"):
                self.links.append(value)
            elif name == "id":
                self.ids.add(value)


@pytest.fixture(params=["local", "s3"])
def site(request, tmp_path, monkeypatch) -> ArtifactStore:
    monkeypatch.setenv("HF_TOKEN", ENV_SECRET)
    if request.param == "local":
        store = ArtifactStore(str(tmp_path / "artifacts"))
    else:
        store = request.getfixturevalue("moto_s3").store()
    populate(store, tmp_path / "src")
    build_site(store)
    return store


def test_every_page_is_built_and_every_link_resolves_to_an_object(site):
    pages = page_paths(site)
    assert pages == ["index.html", f"runs/{RL}/index.html", f"runs/{SFT}/index.html", f"comparisons/{CMP}/index.html"]
    checked = 0
    for page in pages:
        parsed = Links(site.read_text(page))
        assert parsed.links, page
        for link in parsed.links:
            found = resolve(page, link)
            assert found is not None, f"{page}: {link!r} is absolute or leaves the store"
            target, fragment = found
            assert site.exists(target), f"{page}: {link!r} -> {target} is not an object"
            if fragment:
                assert fragment in Links(site.read_text(target)).ids, f"{page}: no #{fragment} in {target}"
            checked += 1
    assert checked > 30


def test_pages_show_what_a_person_looks_for(site):
    root = site.read_text("index.html")
    assert f'href="runs/{RL}/index.html"' in root and f'href="comparisons/{CMP}/index.html"' in root
    rl = site.read_text(f"runs/{RL}/index.html")
    for wanted in (
        'src="plots/metrics.png"',
        'href="config.yaml"',
        'href="command.json"',
        'href="metrics.jsonl"',
        'href="checkpoints/global_step_4/_MANIFEST.json"',
        'href="checkpoints/global_step_4/actor/model%20world.pt"',  # a file of the manifest, percent-encoded
        'href="eval/global_step_4/bench_id/samples.jsonl"',
        f'href="../{SFT}/index.html#step-4"',  # the parent checkpoint
        "verl.trainer.main_ppo",
        "1 + 0 &lt;b&gt;=&lt;/b&gt;?",  # a sample's prompt, escaped
        "code -9",
    ):
        assert wanted in rl, wanted
    assert "global_step_6/_MANIFEST.json" not in rl and "no manifest (upload unfinished)" in rl
    assert "/somewhere/on/the/machine" not in rl  # results.json paths are not shown
    cmp_page = site.read_text(f"comparisons/{CMP}/index.html")
    assert 'src="plots/curves.png"' in cmp_page and f'href="../../runs/{RL}/index.html"' in cmp_page
    assert "s3://elsewhere/runs/x" in cmp_page and 'href="grid.json"' in cmp_page
    png = site.read_bytes(f"runs/{RL}/plots/metrics.png")
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_no_page_names_the_store_or_a_secret(site):
    where = [site.uri()] + ([site.endpoint_url, site.root_path] if site.endpoint_url else [])
    for page in page_paths(site):
        text = site.read_text(page)
        for secret in (ENV_SECRET, FILE_SECRET):
            assert secret not in text, page
        for location in where:
            assert location not in text, (page, location)
    assert "aws_secret_access_key: &#x27;***&#x27;" in site.read_text(f"runs/{RL}/index.html")


def test_pages_are_served_as_html_and_plots_as_png_from_a_bucket(moto_s3, tmp_path):
    store = moto_s3.store()
    populate(store, tmp_path)
    build_site(store)
    head = store.fs.info(store._full("index.html"), refresh=True)
    assert head["ContentType"].startswith("text/html")
    assert store.fs.info(store._full(f"runs/{RL}/plots/metrics.png"), refresh=True)["ContentType"] == "image/png"


def test_refresh_hooks_write_the_page_and_the_root_index_and_never_raise(tmp_path, caplog):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    populate(store, tmp_path / "src")
    refresh_run(RunLayout(store, SFT))
    assert store.exists(f"runs/{SFT}/index.html") and not store.exists(f"runs/{RL}/index.html")
    assert f"runs/{SFT}/index.html" in store.read_text("index.html")
    refresh_comparison(ComparisonLayout(store, CMP))
    assert store.exists(f"comparisons/{CMP}/index.html")

    store.write_bytes(f"runs/{RL}/index.html", b"old")
    broken = ArtifactStore(str(tmp_path / "artifacts"))
    broken.write_text = None  # type: ignore[method-assign]  # any failure while writing
    with caplog.at_level(logging.WARNING):
        refresh_run(RunLayout(broken, RL))
    assert "could not refresh the page of run" in caplog.text and store.read_text(f"runs/{RL}/index.html") == "old"


def test_page_url_follows_the_site_url_else_the_store(tmp_path, monkeypatch):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    monkeypatch.delenv("STABLE_VERL_SITE_URL", raising=False)
    assert page_url(store, "index.html") == (tmp_path / "artifacts" / "index.html").as_uri()
    monkeypatch.setenv("STABLE_VERL_SITE_URL", "http://bucket.example/prefix/")
    assert page_url(store, f"runs/{RL}/index.html") == f"http://bucket.example/prefix/runs/{RL}/index.html"


def test_presigned_copy_links_pages_locally_and_data_by_working_presigned_urls(moto_s3, tmp_path, monkeypatch):
    store = moto_s3.store()
    populate(store, tmp_path / "src")
    build_site(store)
    out = tmp_path / "presigned"
    written = presign_site(store, out, expires_s=600)
    assert sorted(p.relative_to(out).as_posix() for p in written) == sorted(page_paths(store))
    fetched = 0
    for path in written:
        page = path.relative_to(out).as_posix()
        for link in Links(path.read_text()).links:
            if link.startswith("http://"):
                assert "Signature=" in link and link.startswith(moto_s3.endpoint_url)
                key = unquote(link.split("?")[0][len(moto_s3.endpoint_url) + 1 :])
                expected = store.read_bytes(key.split("/", 2)[2])  # bucket/prefix/<rel>
                with urllib.request.urlopen(link, timeout=10) as resp:
                    assert resp.read() == expected
                fetched += 1
            else:
                target, _ = resolve(page, link)
                assert (out / target).is_file() and target.endswith("index.html"), (page, link)
    assert fetched > 20
    with pytest.raises(ValueError, match="local folder"):
        presign_site(ArtifactStore(str(tmp_path / "local")), out)


def test_site_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("STABLE_VERL_SITE_URL", raising=False)
    root = tmp_path / "artifacts"
    populate(ArtifactStore(str(root)), tmp_path / "src")
    assert main(["site", "build", "--store", str(root)]) == 0
    out = capsys.readouterr().out
    assert "wrote 4 pages and 2 plots" in out and (root / "index.html").as_uri() in out
    assert (root / "runs" / RL / "index.html").is_file()
    assert main(["site", "presign", "--store", str(root), "--out", str(tmp_path / "x")]) == 2
    assert "no presigning needed" in capsys.readouterr().err
    assert main(["site", "build", "--store", str(tmp_path / "typo")]) == 2
    assert "nothing to build pages for" in capsys.readouterr().err and not (tmp_path / "typo").exists()


def test_resolve_refuses_absolute_and_escaping_links():
    page = posixpath.join("runs", RL, "index.html")
    assert resolve(page, "plots/metrics.png") == (f"runs/{RL}/plots/metrics.png", "")
    assert resolve(page, "../../index.html#x") == ("index.html", "x")
    for bad in ("https://host/x", "//host/x", "/abs", "s3://b/k", "../../../x", "file:///x"):
        assert resolve(page, bad) is None, bad


def test_an_empty_store_gets_a_root_index(tmp_path):
    store = ArtifactStore(str(tmp_path / "empty"))
    out = build_site(store)
    assert out.pages == ["index.html"] and "Runs (0)" in store.read_text("index.html")
    assert Path(tmp_path / "empty" / "index.html").is_file()


# ------------------------------------------------------------------------- the pipeline's hooks write pages
def test_a_tracked_stage_leaves_its_page_and_the_root_index(tmp_path):
    from stable_verl.launch.runner import VerlRunError
    from stable_verl.train.lifecycle import run_tracked
    from tests.support.standin import standin_job

    run = RunLayout(ArtifactStore(str(tmp_path / "store")), "rl-standin-00000000")
    quiet = lambda _: None  # noqa: E731
    with pytest.raises(VerlRunError):
        run_tracked(run, standin_job(total=4, die_at=3), tmp_path / "a1", echo=quiet)
    page = run.store.read_text(run_page := f"{run.prefix}/index.html")
    assert '<span class="s failed">failed</span>' in page and 'id="step-2"' in page  # synced checkpoint 2
    run_tracked(run, standin_job(total=4), tmp_path / "a2", echo=quiet)
    page = run.store.read_text(run_page)
    assert '<span class="s complete">complete</span>' in page and 'id="step-4"' in page
    assert 'src="plots/metrics.png"' not in page  # the stand-in logs no key metric: nothing to plot
    assert f'href="{run_page}"' in run.store.read_text("index.html")


def test_a_published_comparison_gets_its_page(tmp_path):
    from stable_verl.reports.compare import RunSeries, write_report
    from stable_verl.reports.publish import publish_report

    store = ArtifactStore(str(tmp_path / "store"))
    populate(store, tmp_path / "src")
    keys = ("reward/acc", "actor/train_infer_kl_k3", "actor/entropy_per_token", "response_length/mean")
    metrics = [{"step": s} | dict.fromkeys(keys, 0.1 * s) for s in (1, 2)]
    evals = {0: {"bench_id": 0.2}, 2: {"bench_id": 0.4}}
    series = [RunSeries("stepwise", 0, metrics, evals, RunLayout(store, RL).uri())]
    uris = [s.run_uri for s in series]
    publish_report(store, "coldstart-test", uris, tmp_path / "work", lambda out: write_report(series, out, "test"))
    page = store.read_text("comparisons/coldstart-test/index.html")
    assert 'src="plots/curves.png"' in page and f'href="../../runs/{RL}/index.html"' in page
    assert 'href="comparisons/coldstart-test/index.html"' in store.read_text("index.html")


def test_prefect_link_artifacts_point_at_the_pages(tmp_path, monkeypatch):
    import flows.tasks as tasks

    made = []
    monkeypatch.setattr(tasks, "create_link_artifact", lambda link, **kw: made.append((link, kw)))
    monkeypatch.setenv("STABLE_VERL_SITE_URL", "https://site.example/store")
    store = ArtifactStore(str(tmp_path / "artifacts"))
    tasks._publish_run("rl", {"run_id": RL, "run_uri": RunLayout(store, RL).uri()}, store)
    assert made[0][0] == f"https://site.example/store/runs/{RL}/index.html" and made[0][1]["key"] == "rl-run"
