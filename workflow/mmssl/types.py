"""Data types shared by the data, preprocessing and model packages. This module imports
nothing from ``mmssl``, so any module may import it without creating an import circle."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceSpec:
    """What an encoder needs to know about one source (modality / view).

    Attributes:
        name: source name, e.g. ``"view1"``, ``"T1w"``.
        channels: input channels (1 for MNIST and MRI, 3 for SVHN).
        size: spatial side of the (square / cubic) input.
        dims: 2 for images, 3 for volumes.
    """

    name: str
    channels: int
    size: int
    dims: int = 2
