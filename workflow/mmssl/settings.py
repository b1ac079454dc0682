"""One way to turn a config mapping into a frozen settings dataclass: unknown keys are
an error that names the config section, the key and the allowed keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

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
