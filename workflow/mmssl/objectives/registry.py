"""Registry from method name to a model with its objective (solo-learn style).

Contrastive methods are named by joining their parts in the order L, CL, CS, S with '-'
(``L``, ``CL-S``, ``L-CL-CS-S``, ...): all 15 non-empty combinations are built from the
name. A criterion other than InfoNCE follows an '@' and applies to every part of the
name (``S@vicreg``, ``L-CL-S@dcl``); a criterion that does not apply to one of the parts
(``Criterion.parts`` of :data:`mmssl.objectives.criteria.CRITERIA`) is rejected with the
names that are valid. Other methods (baselines) register a builder under a fixed name
with ``register``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from itertools import combinations
from typing import Any

from mmssl.types import SourceSpec
from mmssl.objectives.base import Method, ModelSettings
from mmssl.objectives.contrastive import PARTS, ContrastiveMethod
from mmssl.objectives.criteria import CRITERIA, DEFAULT_CRITERION

CONTRASTIVE_PARTS = PARTS
Builder = Callable[[list[SourceSpec], ModelSettings], Method]
_REGISTRY: dict[str, Builder] = {}
# modules whose import registers further methods; imported lazily to keep start-up light
_PLUGIN_MODULES = ("mmssl.objectives.baselines",)


class RandomInit(Method):
    """Untrained, randomly initialised encoders: the floor every method must beat."""

    trainable = False

    def losses(self, x, y=None, present=None, meta=None):
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


def criterion_names() -> list[str]:
    """Every valid ``parts@criterion`` name (InfoNCE's are the plain names)."""
    return [f"{name}@{crit}" for crit, kind in CRITERIA.items() if crit != DEFAULT_CRITERION
            for name in contrastive_names() if set(name.split("-")) <= set(kind.parts)]


def split_criterion(name: str) -> tuple[str, str]:
    """``"L-S@dcl"`` -> ``("L-S", "dcl")``; a plain name -> ``(name, DEFAULT_CRITERION)``."""
    base, _, crit = name.partition("@")
    return base, crit or DEFAULT_CRITERION


def parse_contrastive(name: str) -> tuple[str, ...] | None:
    """``"L-CS"`` or ``"L-CS@dcl"`` -> ``("L", "CS")``; None when the name is not a valid
    contrastive combination (with a criterion that applies to each of its parts)."""
    base, crit = split_criterion(name)
    parts = tuple(base.split("-"))
    if "-".join(parts) not in contrastive_names() or crit not in CRITERIA:
        return None
    return parts if set(parts) <= set(CRITERIA[crit].parts) else None


register("random")(RandomInit)


def available_methods() -> list[str]:
    _load_plugins()
    return contrastive_names() + criterion_names() + sorted(_REGISTRY)


def check_method_name(name: str) -> str:
    """Return ``name`` if it names a method, else raise a ValueError that lists them."""
    if parse_contrastive(name) is not None:
        return name
    _load_plugins()
    if name in _REGISTRY:
        return name
    base, crit = split_criterion(name)
    if "@" in name and base in contrastive_names():
        if crit not in CRITERIA:
            raise ValueError(f"unknown criterion {crit!r} in method {name!r}; criteria: "
                             f"{', '.join(c for c in CRITERIA if c != DEFAULT_CRITERION)} "
                             f"({DEFAULT_CRITERION}: no '@')")
        raise ValueError(f"criterion {crit!r} applies to part(s) {', '.join(CRITERIA[crit].parts)} only, so {name!r} "
                         f"is not a method; with {crit}: {', '.join(n for n in criterion_names() if n.endswith('@' + crit))}")
    raise ValueError(
        f"unknown method {name!r}. Contrastive methods join parts in the order L, CL, CS, S with '-' "
        f"(e.g. 'L-CL-S'), optionally with '@criterion' (e.g. 'S@vicreg'); available: {', '.join(available_methods())}"
    )


def build_method(name: str, sources: list[SourceSpec], settings: ModelSettings | dict[str, Any] | None = None) -> Method:
    """Build the model of method ``name`` for ``sources``."""
    if not isinstance(settings, ModelSettings):
        settings = ModelSettings.from_config(settings)
    check_method_name(name)
    parts = parse_contrastive(name)
    if parts is not None:
        return ContrastiveMethod(sources, settings, parts, split_criterion(name)[1])
    return _REGISTRY[name](sources, settings)
