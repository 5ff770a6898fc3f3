"""The one way configs come in: a YAML file plus ``a.b=c`` overrides, merged by OmegaConf, one-line errors.

Flow parameters (:meth:`stable_verl.config.params._Model.from_config`, validated by pydantic) and recipes
(:func:`stable_verl.config.recipes.load_recipe`, typed by their dataclass) both load through :func:`load_yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


def load_yaml(path: str | Path | None, overrides: list[str] | None = None, schema: type | None = None) -> Any:
    """``path`` (YAML, optional) merged with ``overrides``: plain containers, or an instance of the dataclass
    ``schema`` (unknown keys and wrong types rejected by OmegaConf). Bad input is a one-line ``ValueError``."""
    try:
        cfg = OmegaConf.structured(schema) if schema is not None else OmegaConf.create({})
        if path is not None:
            cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides or [])))
        return OmegaConf.to_object(cfg) if schema is not None else OmegaConf.to_container(cfg, resolve=True)
    except FileNotFoundError:
        raise ValueError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ValueError(yaml_error(path, e)) from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        where = f" at {key}" if key else ""
        raise ValueError(f"invalid config{where}: {str(e).splitlines()[0]}") from None


def yaml_error(path: str | Path | None, error: yaml.YAMLError) -> str:
    """One line for a config file that is not valid YAML: the file, the line and column, the parser's problem."""
    mark = getattr(error, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"config file {path} is not valid YAML ({where.strip() or 'parse error'}): {problem}"
