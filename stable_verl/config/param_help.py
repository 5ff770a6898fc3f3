"""Every parameter of a flow with its meaning, from the parameter models' JSON schema (their attribute docstrings).

One source for ``stable-verl run FLOW --help`` (:func:`flat_params`, dotted keys as overrides take them) and the
docs' generated flow-parameter page (``docs/gen_reference.py``: :func:`schema_type`, :func:`field_meaning`).
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from typing import Any


def schema_type(schema: dict[str, Any] | bool, link: bool = True) -> str:
    """A JSON-schema type in words: ``list of int``, ``map to X``, ``A or B``; ``$ref`` names as markdown links."""
    if not isinstance(schema, dict):
        return "any"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})" if link else name
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " or ".join(schema_type(s, link) for s in schema[union])
    if "enum" in schema:
        return " | ".join(f"`{v}`" if link else str(v) for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`" if link else str(schema["const"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {schema_type(schema.get('items', {}), link)}"
    if kind == "object" and "additionalProperties" in schema:
        return f"map to {schema_type(schema['additionalProperties'], link)}"
    return str(kind)


@functools.cache
def inherited_docs(class_name: str) -> dict[str, str]:
    """Field docstrings of a stable_verl class and its bases: pydantic's schema drops those a subclass inherits.
    Cached per class: every field of a settings table asks, and the classes are imported before their schema."""
    docs: dict[str, str] = {}
    for module in [m for name, m in list(sys.modules.items()) if name.startswith("stable_verl")]:
        cls = getattr(module, class_name, None)
        for base in reversed(getattr(cls, "__mro__", ())):
            for key, field in (getattr(base, "__pydantic_fields__", None) or {}).items():
                if field.description:
                    docs[key] = field.description
    return docs


def _ref(prop: dict[str, Any]) -> str:
    return prop.get("$ref", "").rsplit("/", 1)[-1]


def field_meaning(key: str, prop: dict[str, Any], schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A field's docstring; else one its class inherits; else the docstring of the settings class it holds."""
    inherited = inherited_docs(schema.get("title", ""))
    return prop.get("description") or inherited.get(key) or defs.get(_ref(prop), {}).get("description", "")


def field_default(key: str, prop: dict[str, Any], schema: dict[str, Any]) -> str:
    if "default" in prop:
        return json.dumps(prop["default"])
    return "required" if key in set(schema.get("required", [])) else "its defaults"


@dataclass(frozen=True)
class ParamHelp:
    key: str
    """Dotted, as an override names it (``rl.total_steps``)."""
    type: str
    default: str
    meaning: str


def _walk(schema: dict[str, Any], defs: dict[str, Any], prefix: str, seen: tuple[str, ...]) -> list[ParamHelp]:
    out = []
    for key, prop in schema.get("properties", {}).items():
        dotted = f"{prefix}{key}"
        meaning = " ".join(field_meaning(key, prop, schema, defs).split())
        out.append(ParamHelp(dotted, schema_type(prop, link=False), field_default(key, prop, schema), meaning))
        for alt in prop.get("anyOf") or prop.get("oneOf") or [prop]:
            name = _ref(alt)
            if name and name not in seen and defs.get(name, {}).get("properties"):
                out += _walk(defs[name], defs, f"{dotted}.", (*seen, name))
    return out


def flat_params(params_class: type) -> list[ParamHelp]:
    """Every parameter of ``params_class`` (a flow's pydantic model), nested settings as dotted keys; a setting that
    is one of several classes (``model``: the tiny spec or your Hugging Face model) lists each class's keys."""
    from pydantic import TypeAdapter

    schema = TypeAdapter(params_class).json_schema()
    return _walk(schema, schema.get("$defs", {}), "", ())


def _lookup(values: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(values, dict) or part not in values:
            return _MISSING
        values = values[part]
    return values


_MISSING = object()


def help_text(params_class: type, values: dict[str, Any] | None = None, width: int = 120) -> str:
    """``key  (type; default)`` lines, each followed by its meaning, indented (``stable-verl run FLOW --help``).
    ``values``: the parameters as the flow's config sets them (``model_dump(mode="json")``), shown as the default
    where they have the key; else the model's own default."""
    import textwrap

    lines = []
    for p in flat_params(params_class):
        value = _lookup(values or {}, p.key)
        default = p.default if value is _MISSING or isinstance(value, dict) else json.dumps(value)
        default = default if len(default) <= 50 else default[:47] + "..."
        lines.append(f"  {p.key}  ({p.type}; default {default})")
        if p.meaning:
            lines += textwrap.wrap(p.meaning, width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)
