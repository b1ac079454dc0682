"""``vicreg``: VICReg (Bardes et al., ICLR 2022) as the released code
(facebookresearch/vicreg): sim * MSE(za, zb) + var * (v(za) + v(zb)) / 2 +
cov * (c(za) + c(zb)), v(z) = mean_d relu(gamma - sqrt(Var z_d + eps)) (unbiased
variance), c(z) = sum of the squared off-diagonal covariances (after centring,
/ (B - 1)) divided by D; 25 / 25 / 1, gamma 1, eps 1e-4. The paper's eq. 6 writes
mu [v(Z) + v(Z')] without the 1/2; its coefficients (25 / 25 / 1) were tuned with the
released code, which halves the variance term, so we follow the code (without the 1/2
the variance weight would in effect be 50). Applied to z as it is, without the 8192-d
expander of its paper (as Barlow Twins). S only (latent-only). Settings:
``model.criteria.vicreg``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch.nn import functional as F

from mmssl.objectives.criteria.base import LatentCriterion


def vicreg_variance(z: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    """mean_d max(0, gamma - sqrt(Var(z_d) + eps)) (unbiased variance): zero while every
    dimension's standard deviation is above gamma. z: (B, D)."""
    return torch.relu(gamma - torch.sqrt(z.var(0) + eps)).mean()


def vicreg_covariance(z: torch.Tensor) -> torch.Tensor:
    """Sum of the squared off-diagonal covariances, divided by D. z: (B, D)."""
    b, d = z.shape
    zc = z - z.mean(0)
    cov = zc.T @ zc / (b - 1)
    return (cov - torch.diag(torch.diagonal(cov))).pow(2).sum() / d


def vicreg(za: torch.Tensor, zb: torch.Tensor, sim: float, var: float, cov: float, gamma: float,
           eps: float) -> torch.Tensor:
    """sim * MSE(za, zb) + var * (v(za) + v(zb)) / 2 + cov * (c(za) + c(zb)), as the released
    VICReg code (the variance term halved; module docstring). za, zb: (B, D)."""
    invariance = F.mse_loss(za, zb)
    variance = (vicreg_variance(za, gamma, eps) + vicreg_variance(zb, gamma, eps)) / 2
    covariance = vicreg_covariance(za) + vicreg_covariance(zb)
    return sim * invariance + var * variance + cov * covariance


class VICReg(LatentCriterion):
    """VICReg on the two latents of S."""

    name: ClassVar[str] = "vicreg"
    schema_section: ClassVar[str | None] = "vicreg"

    def latent(self, za: torch.Tensor, zb: torch.Tensor, meta: torch.Tensor | None) -> torch.Tensor:
        return vicreg(za, zb, *(float(self.settings[k]) for k in ("sim", "var", "cov", "gamma", "eps")))
