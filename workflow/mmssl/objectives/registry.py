"""Registry from method name to a model with its objective (solo-learn style).

Contrastive methods are named by joining their parts in the order L, CL, CS, S with '-'
(``L``, ``CL-S``, ``L-CL-CS-S``, ...): all 15 non-empty combinations are built from the
name. Other methods (baselines) register a builder under a fixed name with ``register``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from itertools import combinations
from typing import Any

from mmssl.types import SourceSpec
from mmssl.objectives.base import Method, ModelSettings
from mmssl.objectives.contrastive import PARTS, ContrastiveMethod

CONTRASTIVE_PARTS = PARTS
Builder = Callable[[list[SourceSpec], ModelSettings], Method]
_REGISTRY: dict[str, Builder] = {}
# modules whose import registers further methods; imported lazily to keep start-up light
_PLUGIN_MODULES = ("mmssl.objectives.baselines",)


class RandomInit(Method):
    """Untrained, randomly initialised encoders: the floor every method must beat."""

    trainable = False

    def losses(self, x, y=None):
        raise RuntimeError("the 'random' method is not trained")


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator: ``@register("AE")`` on a ``(sources, settings) -> Method`` builder."""

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY or parse_contrastive(name) is not None:
            raise ValueError(f"method {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def _load_plugins() -> None:
    for mod in _PLUGIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:  # a plugin not written yet is not an error
            if err.name != mod:
                raise


def contrastive_names() -> list[str]:
    """All 15 combinations, singles first, parts in the order L, CL, CS, S."""
    return ["-".join(c) for k in range(1, len(PARTS) + 1) for c in combinations(PARTS, k)]


def parse_contrastive(name: str) -> tuple[str, ...] | None:
    """``"L-CS"`` -> ``("L", "CS")``; None when the name is not a contrastive combination."""
    parts = tuple(name.split("-"))
    return parts if "-".join(parts) in contrastive_names() else None


register("random")(RandomInit)


def available_methods() -> list[str]:
    _load_plugins()
    return contrastive_names() + sorted(_REGISTRY)


def check_method_name(name: str) -> str:
    """Return ``name`` if it names a method, else raise a ValueError that lists them."""
    if parse_contrastive(name) is not None:
        return name
    _load_plugins()
    if name in _REGISTRY:
        return name
    raise ValueError(
        f"unknown method {name!r}. Contrastive methods join parts in the order L, CL, CS, S with '-' "
        f"(e.g. 'L-CL-S'); available: {', '.join(available_methods())}"
    )


def build_method(name: str, sources: list[SourceSpec], settings: ModelSettings | dict[str, Any] | None = None) -> Method:
    """Build the model of method ``name`` for ``sources``."""
    if not isinstance(settings, ModelSettings):
        settings = ModelSettings.from_config(settings)
    check_method_name(name)
    parts = parse_contrastive(name)
    if parts is not None:
        return ContrastiveMethod(sources, settings, parts)
    return _REGISTRY[name](sources, settings)
