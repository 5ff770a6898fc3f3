"""The docs site's shape: a short README whose links resolve, every page in a toctree, the reference generator.

The full build (Sphinx, warnings as errors, links checked) is `make docs`, which `make test` runs.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README_MAX_LINES = 200
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
TOCTREE = re.compile(r"```\{toctree\}\n(.*?)```", re.S)


def _pages() -> set[Path]:
    records = DOCS.glob("results/*/record")  # run records are data: docs/conf.py excludes them too
    skip = (DOCS / "_build", DOCS / "reference" / "generated", *records)
    return {p for p in DOCS.rglob("*.md") if not any(p.is_relative_to(s) for s in skip) and p.name != "README.md"}


def _toctree_entries() -> set[Path]:
    entries: set[Path] = set()
    for page in _pages():
        for block in TOCTREE.findall(page.read_text()):
            for line in block.splitlines():
                line = line.strip()
                if line and not line.startswith(":"):
                    entries.add((page.parent / f"{line}.md").resolve())
    return entries


def test_readme_stays_short():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail into docs/ (limit {README_MAX_LINES})"


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text()
    local = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    assert local, "the README links into docs/"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_every_page_is_in_a_toctree_and_every_entry_exists():
    entries = _toctree_entries()
    generated = DOCS / "reference" / "generated"
    pages = {p.resolve() for p in _pages()} - {(DOCS / "index.md").resolve()}
    orphans = sorted(str(p.relative_to(DOCS)) for p in pages - entries)
    assert not orphans, f"pages in no toctree (add them to docs/index.md or docs/results/index.md): {orphans}"
    missing = sorted(str(e) for e in entries if not e.exists() and not e.is_relative_to(generated.resolve()))
    assert not missing, f"toctree entries without a page: {missing}"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_pages_cover_what_the_code_declares():
    from flows.registry import FLOWS

    gen = _generator()
    assert set(gen.PAGES) == {e.name for e in _toctree_entries() if "generated" in e.parts}
    params = gen.flow_params()
    for name in FLOWS:
        assert f"## Flow `{name}`" in params
    # every parameter has its meaning, inherited docstrings included (eval.k is EvalSettings')
    undocumented = [row for row in params.splitlines() if row.startswith("| `") and row.endswith("|  |")]
    assert not undocumented, f"flow parameters without a docstring: {undocumented}"
    assert "| `k` | integer | 32 | Samples per prompt" in params
    recipes = gen.recipes()
    for path in (ROOT / "configs" / "recipes").glob("*.yaml"):
        assert f"## `{path.stem}`" in recipes
    env = gen.env_vars()
    for name in ("STABLE_VERL_ARTIFACT_ROOT", "STABLE_VERL_S3_ENDPOINT", "STABLE_VERL_NATIVE_BF16", "VERL_PLATFORM"):
        assert f"| `{name}` |" in env
    assert "| `TRUE` |" not in env
    metrics = gen.metrics()
    for key in ("actor/train_infer_kl_k1", "actor/entropy_per_token", "routing/drift", "actor/tis/weight_mean"):
        assert f"`{key}`" in metrics
    assert "### `stable-verl run`" in gen.cli()


def test_docs_pages_named_in_code_and_configs_exist():
    named = re.compile(r"docs/[\w./-]+\.md")
    missing = set()
    for top in ("stable_verl", "flows", "tests", "configs", "infra"):
        for path in (ROOT / top).rglob("*"):
            if path.suffix in (".py", ".yaml", ".sh", ".toml", ".lock", ".md") and path.is_file():
                missing |= {
                    f"{path.relative_to(ROOT)}: {m}" for m in named.findall(path.read_text()) if not (ROOT / m).exists()
                }
    assert not missing, f"references to docs pages that do not exist: {sorted(missing)}"
