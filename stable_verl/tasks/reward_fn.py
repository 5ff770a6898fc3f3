"""One reward for training and evaluation: verl's ``default_compute_score`` by ``data_source``, or a user function.

The same :class:`RewardFn` becomes verl's ``reward.custom_reward_function.*`` overrides (:func:`reward_overrides`)
and the scorer of checkpoint evaluation (:func:`load_reward` + :func:`score_one`), so a benchmark is scored exactly
as training rewards it. verl's contract (``verl/trainer/ppo/reward.py``, ``verl/utils/reward_score``):
``fn(data_source, solution_str, ground_truth, extra_info, **reward_kwargs)`` returns a number or a dict with
``score``. Only the ``kwargs`` given here are passed, so a function without ``**kwargs`` works.

The built-in task keeps its reward, named by module (``pkg://stable_verl.tasks.reward``), never by this machine's
file path: a cluster's nodes import it from their own install. A user's reward file reaches a cluster's nodes through
the store like the other stage inputs (:meth:`~.node_inputs.NodeInputs.code`): the command names the node's copy.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

PKG = "pkg://"
BUILTIN_MODULE = "pkg://stable_verl.tasks.reward"


class RewardFn(BaseModel):
    """The reward of training and evaluation (verl's custom-reward hook)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    path: str | None = None
    """A ``.py`` file or ``pkg://package.module``; None: verl's ``default_compute_score`` (by ``data_source``:
    openai/gsm8k, MATH, aime*, math_dapo, ...)."""
    name: str = "compute_score"
    """The function's name in that module (ignored when ``path`` is None)."""
    kwargs: dict[str, Any] = {}
    """Extra keyword arguments of every call (verl's ``reward_kwargs``)."""

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(PKG) and not value.endswith(".py"):
            raise ValueError(f"reward path {value!r} must be a .py file or pkg://package.module")
        return value

    @property
    def file(self) -> Path | None:
        """The user's ``.py`` file, when the reward is one (None for ``pkg://`` and verl's default)."""
        return Path(self.path) if self.path is not None and not self.path.startswith(PKG) else None

    def identity(self) -> dict:
        """What the run ids hash: the function's source bytes (a file's, a ``pkg://`` module's source file), the
        module's name (a file's path is left out: the same file elsewhere is the same reward), name and kwargs."""
        source = _source_file(self.path)
        digest = hashlib.sha256(source.read_bytes()).hexdigest() if source and source.is_file() else None
        module = self.path if self.path is None or self.path.startswith(PKG) else None
        return {"module": module, "name": self.name, "kwargs": self.kwargs, "sha256": digest}


def builtin_reward(format_bonus: float | None = None) -> RewardFn:
    """The built-in task's reward (``stable_verl.tasks.reward.compute_score``); training passes its format bonus."""
    kwargs = {} if format_bonus is None else {"format_bonus": format_bonus}
    return RewardFn(path=BUILTIN_MODULE, name="compute_score", kwargs=kwargs)


def _source_file(path: str | None) -> Path | None:
    if path is None:
        return None
    if path.startswith(PKG):
        spec = importlib.util.find_spec(path.removeprefix(PKG).replace("/", "."))
        return Path(spec.origin) if spec is not None and spec.origin else None
    return Path(path)


def reward_overrides(fn: RewardFn, node_file: PurePath | None = None) -> list[str]:
    """verl's ``reward.custom_reward_function`` overrides for ``fn`` (``path=null``: verl's default by data_source).

    A file reward is named by ``node_file`` when given (a cluster job's copy on its nodes,
    :meth:`~.node_inputs.NodeInputs.code`), else by its resolved path on this machine (a local run)."""
    if fn.path is None:
        return ["reward.custom_reward_function.path=null"]
    if fn.file is None:
        path = fn.path
    else:
        path = str(node_file) if node_file is not None else str(fn.file.resolve())
    overrides = [f"reward.custom_reward_function.path={path}", f"reward.custom_reward_function.name={fn.name}"]
    return overrides + [f"+reward.custom_reward_function.reward_kwargs.{k}={_hydra(v)}" for k, v in fn.kwargs.items()]


def _hydra(value: Any) -> str:
    """A value in Hydra's override grammar (strings quoted, containers in its brace/bracket syntax)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_hydra(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def load_reward(fn: RewardFn) -> Callable[..., Any]:
    """The callable ``fn`` names, imported as verl imports it (``pkg://`` module or file); ValueError naming the fix."""
    if fn.path is None:
        from verl.utils.reward_score import default_compute_score  # verl only here: the default needs it

        return default_compute_score
    if fn.path.startswith(PKG):
        module = importlib.import_module(fn.path.removeprefix(PKG).replace("/", "."))
    else:
        file = Path(fn.path)
        if not file.is_file():
            raise ValueError(f"reward file {fn.path} does not exist")
        spec = importlib.util.spec_from_file_location(f"stable_verl_user_reward_{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    found = getattr(module, fn.name, None)
    if not callable(found):
        raise ValueError(f"reward {fn.path} has no function {fn.name!r}; set task.reward.name")
    return found


def score_one(
    fn: Callable[..., Any], kwargs: dict, data_source: str, response: str, ground_truth: Any, extra_info: Any
) -> dict[str, Any]:
    """One response's score as a dict with ``score``: a number becomes ``{"score": x}``; a dict must hold ``score``.

    Numbers (bools included) become floats; other values (a parsed prediction) are kept as they are."""
    out = fn(data_source, response, ground_truth, extra_info, **kwargs)
    if isinstance(out, dict):
        if "score" not in out:
            raise ValueError(f"the reward returned a dict without 'score' (keys {sorted(out)})")
        return {k: float(v) if _numeric(v) else v for k, v in out.items()}
    if not _numeric(out):
        raise ValueError(f"the reward returned {type(out).__name__}, not a number or a dict with 'score'")
    return {"score": float(out)}


def _numeric(value: Any) -> bool:
    return isinstance(value, bool | int | float)


def correct(score: dict[str, Any]) -> float:
    """What avg@k averages: ``acc`` when the scorer returns it, else ``score``."""
    return float(score["acc"]) if isinstance(score.get("acc"), float) else float(score["score"])
