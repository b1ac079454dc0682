"""The four base contrastive objectives of the taxonomy (paper 2.3, Fig. 2) and any
combination of them.

- L:  latent z_i vs the locations of c_i (same source, Local DIM).
- CL: latent z_i vs the locations of c_j, i != j (cross-local).
- CS: locations of c_i vs locations of c_j, i != j (cross-spatial).
- S:  latent z_i vs latent z_j, i != j (cross-latent, CMC/SimCLR-like).

Cross-source terms are summed over ordered pairs (i, j), i != j, as in the paper's eq. 1;
each part is weighted by alpha (``ModelSettings.weights``), and so is its penalty.
"""

from __future__ import annotations

from itertools import permutations

import torch
from torch import nn

from mmssl.types import SourceSpec
from mmssl.models.heads import build_latent_head, build_local_head
from mmssl.objectives.base import Method, ModelSettings
from mmssl.objectives.infonce import CriticConfig, NCEResult, nce_pooled, nce_same_location

PARTS = ("L", "CL", "CS", "S")
CROSS_SOURCE = {"CL", "CS", "S"}
LOCAL_PARTS = {"L", "CL", "CS"}  # the parts that use the locations c (all but S)



class ContrastiveMethod(Method):
    """Encoders with their projection heads and a set of contrastive parts."""

    def __init__(self, sources: list[SourceSpec], settings: ModelSettings, parts: tuple[str, ...]) -> None:
        super().__init__(sources, settings)
        if CROSS_SOURCE & set(parts) and len(sources) < 2:
            raise ValueError(f"parts {sorted(CROSS_SOURCE & set(parts))} need two or more sources")
        if settings.cs_mode not in ("same_location", "random_location"):
            raise ValueError(f"model.cs_mode must be 'same_location' or 'random_location', got {settings.cs_mode!r}")
        self.parts = parts
        self.critic = CriticConfig(clip=settings.clip, penalty=settings.penalty)
        # heads are shared by all losses of a source, not between sources (paper 3.3); a
        # method without a part on locations (S) builds no local heads: they would be
        # parameters no loss reaches
        self.uses_locations = bool(LOCAL_PARTS & set(parts))
        self.local_heads = nn.ModuleDict(
            {
                s.name: build_local_head(settings.heads, self.encoders[s.name].local_channels, settings.latent, s.dims)
                for s in sources
            }
            if self.uses_locations
            else {}
        )
        self.latent_heads = nn.ModuleDict({s.name: build_latent_head(settings.heads, settings.latent) for s in sources})

    def project(self, x: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """source -> (u_z (B, D, 1), u_c (B, D, M), or None for a method without local parts)."""
        out = {}
        for s in self.sources:
            z, c = self.encoders[s](x[s])
            u_z = self.latent_heads[s](z).unsqueeze(2)
            u_c = self.local_heads[s](c).flatten(2) if self.uses_locations else None
            out[s] = (u_z, u_c)
        return out

    def _pairs(self, part: str) -> list[tuple[str, str]]:
        if part == "L":
            return [(s, s) for s in self.sources]
        return list(permutations(self.sources, 2))

    def _term(self, part: str, a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> NCEResult:
        (za, ca), (zb, cb) = a, b
        if part in ("L", "CL"):
            return nce_pooled(za, cb, self.critic)
        if part == "S":
            return nce_pooled(za, zb, self.critic)
        if self.settings.cs_mode == "same_location":
            return nce_same_location(ca, cb, self.critic)
        idx = torch.randint(ca.shape[2], (ca.shape[0],), device=ca.device)
        anchor = ca[torch.arange(ca.shape[0], device=ca.device), :, idx].unsqueeze(2)
        return nce_pooled(anchor, cb, self.critic)

    def losses(self, x: dict[str, torch.Tensor], y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        proj = self.project(x)
        terms: dict[str, torch.Tensor] = {}
        penalty = torch.zeros((), device=next(self.parameters()).device)
        for part in self.parts:
            alpha = float(self.settings.weights.get(part, 1.0))
            results = [self._term(part, proj[a], proj[b]) for a, b in self._pairs(part)]
            terms[part] = alpha * torch.stack([r.loss for r in results]).sum()
            penalty = penalty + alpha * torch.stack([r.penalty for r in results]).sum()
        if self.critic.penalty > 0:
            terms["penalty"] = penalty
        return terms
