"""No module imports upward. From the bottom (each layer may import those below it):

* ``core`` (pure torch), ``artifacts`` (the store), ``models``, ``tasks`` (-> artifacts);
* ``verl_ext`` (-> core, artifacts): loaded in every verl, Ray and vLLM process, it uploads checkpoints and metrics to
  the store from the node that saves them (verl_ext/store_sync.py);
* ``launch`` (-> artifacts): subprocesses and Ray Jobs, knowing nothing of stages; ``site`` (-> core, artifacts): the
  store's pages and views, refreshed by the stages that change what they show;
* ``config`` (-> launch for the trackers' names and the default stall limit, verl_ext for the registries);
* ``train`` (-> config, launch, site); ``eval`` (-> train: a checkpoint's HF folder, fetched or merged);
* ``reports`` (-> config, site); ``cli`` and ``flows`` on top.

The imports are read from the source (ast), so a lazy import inside a function counts as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINES = {"verl", "vllm", "ray", "prefect", "s3fs", "fsspec", "boto3", "botocore"}
PACKAGES = ("core", "artifacts", "models", "tasks", "verl_ext", "launch", "site", "config", "train", "eval", "reports")
TOP = {"stable_verl.cli", "flows"}


def _above(*allowed: str) -> set[str]:
    """The first-party packages outside ``allowed`` (the package itself and what it may import), cli and flows."""
    return {f"stable_verl.{p}" for p in PACKAGES if p not in allowed} | TOP


#: package -> the first-party packages and the third-party engines it must not import.
FORBIDDEN: dict[str, set[str]] = {
    "stable_verl.core": _above("core") | ENGINES,
    "stable_verl.artifacts": _above("artifacts", "core"),
    "stable_verl.models": _above("models", "core", "artifacts"),
    "stable_verl.tasks": _above("tasks", "core", "artifacts"),
    "stable_verl.verl_ext": _above("verl_ext", "core", "artifacts") | {"prefect"},
    "stable_verl.launch": _above("launch", "core", "artifacts"),
    "stable_verl.site": _above("site", "core", "artifacts"),
    "stable_verl.config": _above("config", "core", "artifacts", "models", "tasks", "verl_ext", "launch"),
    "stable_verl.train": _above(
        "train", "config", "core", "artifacts", "models", "tasks", "verl_ext", "launch", "site"
    ),
    "stable_verl.eval": _above(
        "eval", "train", "config", "core", "artifacts", "models", "tasks", "verl_ext", "launch", "site"
    ),
    "stable_verl.reports": _above("reports", "config", "core", "artifacts", "models", "tasks", "site"),
}


def imported(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def violations(package: str, forbidden: set[str]) -> list[str]:
    found = []
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        for name in sorted(imported(path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package: str):
    assert violations(package, FORBIDDEN[package]) == []


def test_the_check_sees_an_upward_import(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from stable_verl.train.plan import plan_rl\n")
    assert "stable_verl.train.plan" in imported(module)
