"""The wheel works outside the checkout: built from the sources, installed into a fresh venv (its dependencies taken
from this one, not reinstalled), ``stable-verl`` finds its flows, configs and recipes there and imports nothing of
the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support import progress

ROOT = Path(__file__).resolve().parents[3]
SOURCES = ("pyproject.toml", "README.md", "stable_verl", "flows", "configs")


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = progress.run(argv, cwd=cwd, env=env)
    assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with the wheel installed (no dependencies), this venv's site-packages on its path: the venv's
    bin folder and the environment to run it in (no PYTHONPATH)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a clean copy: setuptools' build/ folder in the checkout could carry stale modules
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"), str(src)], tmp)
    (wheel,) = (tmp / "dist").glob("stable_verl-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp)
    python = venv / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], tmp)
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp).stdout)
    # this venv's packages, appended after the new venv's own (a path line: the .pth files there are not run, so the
    # checkout's editable install stays out)
    (Path(purelib.as_posix().strip()) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return venv / "bin", env


def test_the_installed_package_is_the_wheels(installed, tmp_path):
    bin_dir, env = installed
    code = "import flows, stable_verl; print(stable_verl.__file__); print(flows.__file__)"
    done = _run([str(bin_dir / "python"), "-c", code], tmp_path, env)
    for line in done.stdout.split():
        assert Path(line).is_relative_to(bin_dir.parent) and not Path(line).is_relative_to(ROOT), line


def test_plan_cp_and_recipes_run_outside_the_checkout(installed, tmp_path):
    bin_dir, env = installed
    cli = str(bin_dir / "stable-verl")
    plan = _run([cli, "plan", "coldstart"], tmp_path, env).stdout
    assert "verl.trainer.main_ppo" in plan and "MiniRLLossConfig" in plan
    assert str(ROOT) not in plan

    _run([cli, "cp", "coldstart", "x.yaml"], tmp_path, env)
    assert (tmp_path / "x.yaml").read_text() == (ROOT / "configs" / "coldstart.yaml").read_text()
    assert _run([cli, "plan", "coldstart", "--config", "x.yaml"], tmp_path, env).stdout == plan

    unknown = progress.run([cli, "cp", "nope", "y.yaml"], cwd=tmp_path, env=env)
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
    assert "unknown config 'nope'" in unknown.stderr and "recipes/minirl" in unknown.stderr

    listed = _run([cli, "recipes", "list"], tmp_path, env).stdout
    for recipe in (ROOT / "configs" / "recipes").glob("*.yaml"):
        assert recipe.stem in listed, recipe.stem
