"""``barlow``: Barlow Twins (Zbontar et al., ICML 2021) as the released code
(facebookresearch/barlowtwins): each embedding batch-normalised as BatchNorm1d(affine=False)
does, (z - mean) / sqrt(biased var + eps), eps 1e-5; C = za_n^T zb_n / B;
sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2, lambda = 5.1e-3. Applied to z as it is
(the paper's identity head), without the 8192-d expander of its paper: a departure that
keeps the encoder and its 64-d latent the same for every method. S only (latent-only).
Settings: ``model.criteria.barlow``.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from mmssl.objectives.criteria.base import LatentCriterion


def batch_norm(z: torch.Tensor, eps: float) -> torch.Tensor:
    """(B, D) -> (z - mean) / sqrt(biased variance + eps) along the batch: BatchNorm1d with
    affine=False in training mode, as the Barlow Twins code normalises."""
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


def barlow_twins(za: torch.Tensor, zb: torch.Tensor, lam: float, eps: float) -> torch.Tensor:
    """sum_i (1 - C_ii)^2 + lam * sum_{i != j} C_ij^2, C = batch_norm(za)^T batch_norm(zb) / B:
    the cross-correlation of the two embeddings (D, D). za, zb: (B, D)."""
    c = batch_norm(za, eps).T @ batch_norm(zb, eps) / za.shape[0]
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = (c - torch.diag(torch.diagonal(c))).pow(2).sum()
    return on + lam * off


class BarlowTwins(LatentCriterion):
    """Barlow Twins on the two latents of S."""

    name: ClassVar[str] = "barlow"
    schema_section: ClassVar[str | None] = "barlow"

    def latent(self, za: torch.Tensor, zb: torch.Tensor, meta: torch.Tensor | None) -> torch.Tensor:
        return barlow_twins(za, zb, float(self.settings["lambda"]), float(self.settings["eps"]))
