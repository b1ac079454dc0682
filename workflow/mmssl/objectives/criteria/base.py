"""The interface of a criterion: *how* a taxonomy part (L, CL, CS, S) relates two
embeddings (the part says *what* is related; :mod:`mmssl.objectives.contrastive`).

A criterion is one class in one module of this package, registered by name in
:data:`mmssl.objectives.criteria.CRITERIA`. It declares

- ``name``: the suffix of method names after '@' (``S@vicreg``);
- ``parts``: the parts it applies to;
- ``schema_section``: the ``model.criteria.<section>`` of the config schema its settings
  live in (the only home of their defaults), or None when it has no settings;
- its scoring: ``pooled`` and ``same_location`` (critic terms, for L, CL, CS and a critic
  S) and/or ``latent`` (an S term on the two latents z alone);
- ``latent_s``: whether its S term is the latent-only one (may depend on its settings);
- ``metadata_columns``: the store index columns its loss needs with every batch.

An instance holds its settings (the validated ``model.criteria.<section>`` dict) and
checks them when built.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from mmssl.objectives.infonce import CriticConfig, NCEResult


class Criterion:
    """Base class: a criterion with neither critic nor latent scoring (subclasses give one
    or both). settings: the criterion's ``model.criteria.<schema_section>`` values."""

    name: ClassVar[str]
    parts: ClassVar[tuple[str, ...]]
    schema_section: ClassVar[str | None] = None

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings

    @classmethod
    def from_criteria_settings(cls, criteria: dict[str, Any]) -> Criterion:
        """From ``ModelSettings.criteria`` (section name -> values): the criterion's own
        section, or no settings when it declares none."""
        return cls({} if cls.schema_section is None else criteria[cls.schema_section])

    @property
    def latent_s(self) -> bool:
        """Whether S is a function of the two latents z_i, z_j alone (``latent``):
        symmetric in the two sources, no critic scores (no clipping, no penalty)."""
        return False

    @property
    def metadata_columns(self) -> tuple[str, ...]:
        """Store index columns ``latent`` needs in ``meta`` (none by default)."""
        return ()

    def pooled(self, u: torch.Tensor, v: torch.Tensor, cfg: CriticConfig) -> NCEResult:
        """Critic term with pooled negatives. u: (B, D, P) anchors, v: (B, D, Q) targets."""
        raise NotImplementedError(f"criterion {self.name!r} has no critic form")

    def same_location(self, u: torch.Tensor, v: torch.Tensor, cfg: CriticConfig) -> NCEResult:
        """Critic term of location m of u against location m of v. u, v: (B, D, M)."""
        raise NotImplementedError(f"criterion {self.name!r} has no critic form")

    def latent(self, za: torch.Tensor, zb: torch.Tensor, meta: torch.Tensor | None) -> torch.Tensor:
        """Latent-only S term (scalar). za, zb: (n, latent); meta: (n,) the column of
        ``metadata_columns`` (None when it has none)."""
        raise NotImplementedError(f"criterion {self.name!r} has no latent-only S term")


class LatentCriterion(Criterion):
    """A criterion that relates one vector per sample to one vector per sample: S only,
    always the latent-only form."""

    parts: ClassVar[tuple[str, ...]] = ("S",)

    @property
    def latent_s(self) -> bool:
        return True
