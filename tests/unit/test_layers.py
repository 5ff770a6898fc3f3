"""No module imports upward: core <- verl_ext <- pipeline <- flows / cli, with the artifact store (artifacts) below
verl_ext and pipeline: verl's own processes upload checkpoints and metrics to it (verl_ext/store_sync.py).

The imports are read from the source (ast), so a lazy import inside a function counts as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINES = {"verl", "vllm", "ray", "prefect", "s3fs", "fsspec", "boto3", "botocore"}

#: package -> the first-party packages and the third-party engines it must not import.
FORBIDDEN: dict[str, set[str]] = {
    "stable_verl.core": {
        "stable_verl.verl_ext",
        "stable_verl.pipeline",
        "stable_verl.artifacts",
        "stable_verl.cli",
        "flows",
    }
    | ENGINES,
    "stable_verl.verl_ext": {"stable_verl.pipeline", "stable_verl.cli", "flows", "prefect"},
    "stable_verl.artifacts": {"stable_verl.verl_ext", "stable_verl.pipeline", "stable_verl.cli", "flows"},
    "stable_verl.pipeline": {"stable_verl.cli", "flows"},
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
    module.write_text("def f():\n    from stable_verl.pipeline.plan import plan_rl\n")
    assert "stable_verl.pipeline.plan" in imported(module)
