"""stable_verl/env.py: every STABLE_VERL_* variable declared once, read at call time, importable from every layer."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from stable_verl import env

ROOT = Path(__file__).resolve().parents[2]


def test_env_imports_only_the_standard_library():
    """So verl_ext (verl/Ray/vLLM workers, which may import only core and artifacts) and artifacts can import it."""
    tree = ast.parse((ROOT / "stable_verl" / "env.py").read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "." for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    top = {name.split(".")[0] for name in names}
    assert top <= set(sys.stdlib_module_names) | {"__future__"}


def test_every_variable_is_declared_once_with_its_meaning():
    names = [v.name for v in env.VARIABLES]
    assert len(names) == len(set(names)) and all(n.startswith("STABLE_VERL_") for n in names)
    assert all(len(v.doc) > 20 for v in env.VARIABLES)
    declared = {v.name for v in vars(env).values() if isinstance(v, env.EnvVar)}
    assert declared == set(names)  # nothing declared beside the list the reference page is built from


def test_no_other_module_names_one_of_our_variables():
    """Modules use ``env.X.name`` / ``env.X.get()``; the bare name appears in their docstrings and help texts only."""
    found = []
    for top in ("stable_verl", "flows"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path == ROOT / "stable_verl" / "env.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    if node.value.startswith("STABLE_VERL_") and node.value.isidentifier():
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}")
    assert found == []


def test_values_are_read_at_call_time(monkeypatch):
    monkeypatch.delenv(env.NODE_DIR.name, raising=False)
    assert env.NODE_DIR.get() is None
    monkeypatch.setenv(env.NODE_DIR.name, "/scratch")
    assert env.NODE_DIR.get() == "/scratch"
    monkeypatch.setenv(env.NODE_DIR.name, "")
    assert env.NODE_DIR.get() is None  # empty is unset
    assert env.NODE_DIR.get({env.NODE_DIR.name: "/given"}) == "/given"  # an explicit environment wins


def test_typed_readers():
    assert env.s3_endpoint({"AWS_ENDPOINT_URL": "http://b", "AWS_ENDPOINT_URL_S3": "http://a"}) == "http://a"
    assert env.s3_endpoint({"STABLE_VERL_S3_ENDPOINT": "http://ours", "AWS_ENDPOINT_URL": "http://b"}) == "http://ours"
    assert env.s3_endpoint({}) is None
    assert [env.native_bf16({env.NATIVE_BF16.name: v}) for v in ("1", " yes", "0", "False")] == [
        True,
        True,
        False,
        False,
    ]
    assert env.native_bf16({}) is None
    with pytest.raises(ValueError, match="STABLE_VERL_NATIVE_BF16 must be 0 or 1"):
        env.native_bf16({env.NATIVE_BF16.name: "maybe"})
    assert (
        env.rollout_precision({}) == "native" and env.rollout_precision({env.ROLLOUT_PRECISION.name: " FP8"}) == "fp8"
    )
    assert (
        env.site_url({env.SITE_URL.name: "  "}) is None
        and env.site_url({env.SITE_URL.name: " http://s/ "}) == "http://s/"
    )
