"""The interface every method (contrastive combination or baseline) implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmssl.models.encoders import DCGANEncoder
from mmssl.schema import schema_defaults
from mmssl.settings import schema_settings
from mmssl.types import SourceSpec


@schema_settings("model")
class ModelSettings:
    """Model and objective settings shared by all methods (config key ``model``).

    latent: size of z (paper: 64). width: channels of the first encoder layer (DCGAN: 32).
    heads: ``paper`` or ``code`` projection heads. clip / penalty: AMDIM score clipping
    bound (None = off) and squared-score penalty weight (0 = off). weights: alpha per
    contrastive part. cs_mode: ``same_location`` (location m of c_i vs location m of c_j)
    or ``random_location`` (authors' code: one random location of c_i vs all of c_j).
    extra: method-specific settings (baselines).

    Every default is the config schema's (``model`` section), read when a field is left out.
    """

    latent: int
    width: int
    heads: str
    clip: float | None
    penalty: float
    weights: dict[str, float]
    cs_mode: str
    extra: dict[str, Any]

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> ModelSettings:
        """From a ``model`` section; keys that are not fields (e.g. a baseline's ``cca_k``
        given at the top level) join ``extra``, and ``weights`` may name only some parts."""
        cfg = dict(cfg or {})
        known = {f for f in cls.__dataclass_fields__}
        extra = {k: v for k, v in cfg.items() if k not in known}
        base = {k: v for k, v in cfg.items() if k in known and k != "extra"}
        if "weights" in base:
            base["weights"] = {**schema_defaults("model")["weights"], **base["weights"]}
        return cls(**base, extra={**cfg.get("extra", {}), **extra})


class Method(nn.Module):
    """A trainable method. One encoder per source lives in ``self.encoders``.

    Subclasses implement ``losses``; ``embed`` returns the raw latent z the probe and the
    similarity analysis read (heads are never used for evaluation).
    """

    uses_labels: bool = False
    trainable: bool = True

    def __init__(self, sources: list[SourceSpec], settings: ModelSettings) -> None:
        super().__init__()
        if not sources:
            raise ValueError("a method needs at least one source")
        self.sources = [s.name for s in sources]
        self.specs = {s.name: s for s in sources}
        self.settings = settings
        self.encoders = nn.ModuleDict(
            {s.name: DCGANEncoder(s, latent=settings.latent, width=settings.width) for s in sources}
        )

    def losses(self, x: dict[str, torch.Tensor], y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """x: source -> (B, C, *S) batch; y: (B,) integer labels. Returns named scalar
        terms; training minimises their sum."""
        raise NotImplementedError

    @torch.no_grad()
    def embed(self, x: torch.Tensor, source: str) -> torch.Tensor:
        """x: (B, C, *S) of one source -> z: (B, latent)."""
        return self.encoders[source](x).z
