"""The ``maps`` section of an MRI dataset (``datasets.<name>.maps``); every default lives in
the config schema (``$defs.maps``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mmssl.settings import schema_settings


@schema_settings("maps.null_test", "maps.null_test")
class NullSettings:
    """The permutation null of an attribution map (:mod:`mmssl.maps.pipeline`).
    permutations: label permutations (0: no null, no threshold); seed: of the permutations;
    alpha: the family-wise level of the threshold."""

    permutations: int
    seed: int
    alpha: float


@schema_settings("maps", "maps")
class MapsSettings:
    """enabled: whether the workflow's default target asks for the maps (the rules run on
    request either way). steps: Integrated Gradients path points. batch_size: volumes per
    forward/backward pass (path points x subjects). null_test: the ``maps.null_test`` mapping
    (:class:`NullSettings`). The decision attributed is the probe's (its own settings:
    ``probe.binary``)."""

    enabled: bool
    steps: int
    batch_size: int
    null_test: dict[str, Any]

    def __post_init__(self) -> None:
        # every null_test key, checked and filled from the schema: {} and the defaults are one setting
        object.__setattr__(self, "null_test", asdict(NullSettings.from_config(self.null_test)))

    @property
    def null_settings(self) -> NullSettings:
        return NullSettings(**self.null_test)
