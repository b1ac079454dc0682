"""Settings: the one command-line type of ``--settings-json`` arguments, the one way to
turn a config mapping into a frozen settings dataclass (unknown keys are an error that
names the config section, the key and the allowed keys), and the one way a settings
dataclass gets its defaults: from the config schema (workflow/schemas/config.schema.yaml),
which is where every default of the ``model``, ``train``, ``probe``, ``similarity`` and
``splits`` sections lives. A dataclass field declares ``schema_field(section, key)``
instead of repeating the value, so the schema and the code cannot disagree."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import field, fields
from pathlib import Path
from typing import Any, TypeVar

from mmssl.schema import schema_defaults

T = TypeVar("T")


def check_keys(cls: type, cfg: Mapping[str, Any] | None, section: str) -> dict[str, Any]:
    """``cfg`` as a dict, after checking every key is a field of dataclass ``cls``."""
    values = dict(cfg or {})
    allowed = sorted(f.name for f in fields(cls))
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {section} key(s) {unknown}; allowed: {allowed}")
    return values


def settings_from(cls: type[T], cfg: Mapping[str, Any] | None, section: str) -> T:
    """Dataclass ``cls`` built from ``cfg`` (see check_keys)."""
    return cls(**check_keys(cls, cfg, section))


def schema_field(section: str, key: str) -> Any:
    """A dataclass field whose default is the schema's default of ``section.key``, read
    when an instance leaves the field out (the rules always pass the full validated
    section; tests and hand-made settings give only what they change)."""
    return field(default_factory=lambda: schema_defaults(section)[key])


def settings_arg(text: str) -> dict:
    """The one type of every ``--settings-json`` (and other ``--*-json``) argument: an
    inline JSON object, or the path of a .json file holding one; "" is ``{}``. The error
    names the bad text or file."""
    text = text.strip()
    if not text:
        return {}
    source = "inline JSON"
    if not text.startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"neither a JSON object nor an existing .json file: {text[:200]}")
        source, text = str(path), path.read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"{source}: not valid JSON ({err}): {text[:200]}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{source}: expected a JSON object, got {type(value).__name__}")
    return value
