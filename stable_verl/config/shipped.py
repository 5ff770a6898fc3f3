"""The configs that ship with stable-verl, read through :mod:`importlib.resources`: the flows' default configs, the
GPU starting points and the RL recipes, in ``stable_verl/_configs``.

In a source checkout ``stable_verl/_configs`` is a link to the repository's ``configs/`` folder (one copy of each
file); the wheel carries the files themselves (pyproject.toml's package data). Either way they are found the same
way, and ``stable-verl cp NAME DEST`` copies one out to edit.
"""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path


def config_dir() -> Path:
    """The folder of shipped configs (``configs/`` of a source checkout, ``stable_verl/_configs`` of a wheel)."""
    root = files("stable_verl") / "_configs"
    if not isinstance(root, Path) or not root.is_dir():
        raise RuntimeError(f"stable-verl's configs are not installed as files ({root}); reinstall the package")
    return root


def recipe_dir() -> Path:
    """The RL recipes (``configs/recipes/``)."""
    return config_dir() / "recipes"


def shipped_configs() -> dict[str, Path]:
    """Every shipped config by name: its path below the configs folder without ``.yaml`` (``coldstart``,
    ``recipes/minirl``, ``gpu/olmoe_1b_7b``), sorted."""
    root = config_dir()
    found = {p.relative_to(root).with_suffix("").as_posix(): p for p in root.rglob("*.yaml")}
    return dict(sorted(found.items()))


def copy_config(name: str, dest: Path) -> Path:
    """Copy shipped config ``name`` to ``dest`` (a file, or a folder to put it in); the path written. ValueError for
    an unknown name (listing the names) or an existing file."""
    configs = shipped_configs()
    if name.removesuffix(".yaml") not in configs:
        raise ValueError(f"unknown config {name!r}; shipped: {', '.join(configs)}")
    source = configs[name.removesuffix(".yaml")]
    target = dest / source.name if dest.is_dir() else dest
    if target.exists():
        raise ValueError(f"{target} exists; remove it or copy to another path")
    if not target.parent.is_dir():
        raise ValueError(f"no folder {target.parent} to copy {name} into")
    shutil.copyfile(source, target)
    return target
