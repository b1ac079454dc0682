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
from collections.abc import Callable, Mapping
import functools
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from mmssl.schema import schema_defaults, section_values

T = TypeVar("T")


def check_keys(cls: type, cfg: Mapping[str, Any] | None, section: str) -> dict[str, Any]:
    """``cfg`` as a dict, after checking every key is a field of dataclass ``cls``."""
    values = dict(cfg or {})
    allowed = sorted(f.name for f in fields(cls))
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {section} key(s) {unknown}; allowed: {allowed}")
    return values


def schema_default(section: str, key: str) -> Any:
    """The schema's default of ``section.key`` (a fresh copy)."""
    return schema_defaults(section)[key]


def schema_settings(section: str, label: str | None = None) -> Callable[[type[T]], type[T]]:
    """Class decorator: a frozen dataclass holding the config schema's section ``section``
    (a ``$defs`` name, or a dotted path into one: "train.augment", "probe.binary").

    Every field the class body leaves without a value defaults to the schema's default,
    read when an instance leaves it out (not at import), so the schema is the one place
    defaults live and ``TrainSettings(epochs=3)`` still works. Unless the class defines its
    own, ``from_config(cfg)`` fills the keys ``cfg`` leaves out from the schema, validates
    them against it (a wrong key or value names ``label``, default ``section``, and what is
    allowed) and builds the instance; ``__post_init__`` may then normalise values."""

    def decorate(cls: type[T]) -> type[T]:
        for name in cls.__dict__.get("__annotations__", {}):
            if name not in cls.__dict__:
                setattr(cls, name, field(default_factory=functools.partial(schema_default, section, name)))
        if "from_config" not in cls.__dict__:
            def from_config(klass: type[T], cfg: Mapping[str, Any] | None = None) -> T:
                return klass(**section_values(section, cfg, label or section))

            cls.from_config = classmethod(from_config)  # type: ignore[attr-defined]
        return dataclass(frozen=True)(cls)

    return decorate


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
