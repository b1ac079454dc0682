"""The interface every method (contrastive combination or baseline) implements, and the
helpers that select the samples of a batch having given sources (missing sources).

Presence: ``present`` maps each source to a (B,) bool tensor, True where the sample has
that source; ``None`` means every sample has every source (and the methods then run the
exact code path of a complete dataset). Rows of an absent source hold zeros that no
method may encode: an encoder sees only the samples that have its source, so no gradient
reaches it from a sample that lacks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmssl.models.encoders import DCGANEncoder
from mmssl.schema import schema_defaults, section_values
from mmssl.settings import schema_settings
from mmssl.types import SourceSpec

Presence = dict[str, torch.Tensor] | None
# metadata columns of the batch's samples (e.g. "age" for the y-aware criterion): name -> (B,) float
Meta = dict[str, torch.Tensor] | None

# a batch part with fewer samples than this is left out: InfoNCE needs a negative and
# BatchNorm in training more than one value per channel
MIN_SAMPLES = 2


def rows_with(present: Presence, sources: tuple[str, ...] | list[str]) -> torch.Tensor | None:
    """(n,) indices of the batch samples that have every one of ``sources``, or None when
    all of them do (so callers keep the full-batch path)."""
    if present is None:
        return None
    mask = torch.stack([present[s] for s in sources]).all(0)
    return None if bool(mask.all()) else mask.nonzero().squeeze(1)


def positions(present: Presence, source: str, rows: torch.Tensor | None,
              encoded: torch.Tensor | None) -> torch.Tensor | None:
    """Where the batch samples ``rows`` sit among the samples ``encoded`` for ``source``.

    rows: (n,) batch indices (None = all B); encoded: (m,) batch indices the source was
    encoded on (None = all B). Returns (n,) indices into the encoded subset, or None when
    the subset is the batch itself and rows is None."""
    if encoded is None:
        return rows
    lookup = torch.full((len(present[source]),), -1, dtype=torch.long, device=encoded.device)
    lookup[encoded] = torch.arange(len(encoded), device=encoded.device)
    pos = lookup if rows is None else lookup[rows]
    if bool((pos < 0).any()):
        raise RuntimeError(f"source {source!r}: samples needed by a term were not encoded")
    return pos


def take(t: torch.Tensor | None, idx: torch.Tensor | None) -> torch.Tensor | None:
    """t[idx] along the batch dimension; t itself when idx is None."""
    return t if t is None or idx is None else t[idx]


@schema_settings("model")
class ModelSettings:
    """Model and objective settings shared by all methods (config key ``model``).

    latent: size of z (paper: 64). width: channels of the first encoder layer (DCGAN: 32).
    heads: ``paper`` or ``code`` projection heads. clip / penalty: AMDIM score clipping
    bound (None = off) and squared-score penalty weight (0 = off). weights: alpha per
    contrastive part. cs_mode: ``same_location`` (location m of c_i vs location m of c_j)
    or ``random_location`` (authors' code: one random location of c_i vs all of c_j).
    criteria: settings of the criteria (:mod:`mmssl.objectives.criteria`), by their
    ``schema_section`` (``model.criteria.<section>``). extra: method-specific settings (baselines).

    Every default is the config schema's (``model`` section), read when a field is left out.
    """

    latent: int
    width: int
    heads: str
    clip: float | None
    penalty: float
    weights: dict[str, float]
    cs_mode: str
    criteria: dict[str, Any]
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
        if "criteria" in base:  # each criterion's keys filled from the schema and checked
            base["criteria"] = section_values("model", {"criteria": base["criteria"]}, "model")["criteria"]
        return cls(**base, extra={**cfg.get("extra", {}), **extra})

    def __post_init__(self) -> None:
        # extra's keys take their defaults from the schema (model.extra) however the
        # instance was built, and a misspelt key is an error rather than a silent default
        object.__setattr__(self, "extra", section_values("model.extra", self.extra, "model.extra"))
        # the choices the schema enumerates, checked here however the instance was built:
        # their one check (the methods read them without a check of their own)
        section_values("model", {"heads": self.heads, "cs_mode": self.cs_mode}, "model")


class Method(nn.Module):
    """A trainable method. One encoder per source lives in ``self.encoders``.

    Subclasses implement ``losses``; ``embed`` returns the raw latent z the probe and the
    similarity analysis read (heads are never used for evaluation).
    """

    uses_labels: bool = False
    trainable: bool = True
    # whether ``losses`` accepts batches where some samples lack a source (train.incomplete_samples: use);
    # a method that does not trains on complete samples only
    supports_missing: bool = True
    # store index columns ``losses`` needs in ``meta`` (the y-aware criterion's variable)
    metadata_columns: tuple[str, ...] = ()

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

    def losses(self, x: dict[str, torch.Tensor], y: torch.Tensor | None = None,
               present: Presence = None, meta: Meta = None) -> dict[str, torch.Tensor]:
        """x: source -> (B, C, *S) batch; y: (B,) integer labels; present: source -> (B,)
        bool, None when every sample has every source (see the module docstring); meta: the
        columns of ``metadata_columns`` for the batch (name -> (B,) float). Returns
        named scalar terms; training minimises their sum. A term no sample of the batch can
        take part in is left out (so the dict may be empty)."""
        raise NotImplementedError

    @torch.no_grad()
    def embed(self, x: torch.Tensor, source: str) -> torch.Tensor:
        """x: (B, C, *S) of one source -> z: (B, latent)."""
        return self.encoders[source](x).z
