"""``infonce``: the paper's InfoNCE with the separate critic, clipping and penalty
(:mod:`mmssl.objectives.infonce`), on every part. The criterion of plain method names
(no '@'); it has no settings of its own (``model.clip`` and ``model.penalty`` are the
critic's)."""

from __future__ import annotations

from typing import ClassVar

import torch

from mmssl.objectives.criteria.base import Criterion
from mmssl.objectives.infonce import CriticConfig, NCEResult, nce_pooled, nce_same_location


class InfoNCE(Criterion):
    """InfoNCE: pooled negatives for L, CL, S (and CS random_location), same-location for CS."""

    name: ClassVar[str] = "infonce"
    parts: ClassVar[tuple[str, ...]] = ("L", "CL", "CS", "S")

    def pooled(self, u: torch.Tensor, v: torch.Tensor, cfg: CriticConfig) -> NCEResult:
        return nce_pooled(u, v, cfg)

    def same_location(self, u: torch.Tensor, v: torch.Tensor, cfg: CriticConfig) -> NCEResult:
        return nce_same_location(u, v, cfg)
