"""The ``maps`` section of an MRI dataset (``datasets.<name>.maps``); every default lives in
the config schema (``$defs.maps``)."""

from __future__ import annotations

from mmssl.settings import schema_settings


@schema_settings("maps", "maps")
class MapsSettings:
    """enabled: whether the workflow's default target asks for the maps (the rules run on
    request either way). steps: Integrated Gradients path points. batch_size: volumes per
    forward/backward pass (path points x subjects). The decision attributed is the probe's
    (its own settings: ``probe.binary``)."""

    enabled: bool
    steps: int
    batch_size: int
