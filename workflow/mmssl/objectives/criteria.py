"""Criteria a taxonomy part can be trained with besides InfoNCE (issue 15).

The part says *what* is related (L, CL, CS, S); the criterion says *how*:

- ``infonce``: the paper's (:mod:`mmssl.objectives.infonce`), every part.
- ``dcl``: decoupled contrastive learning (Yeh et al., ECCV 2022): InfoNCE without the
  positive in the denominator, -s_pos + log sum_neg exp(s_neg). Every part, with the same
  separate critic, clipping and penalty as InfoNCE (the paper's temperature-scaled cosine
  is not used, so the parts stay comparable).
- ``barlow``: Barlow Twins (Zbontar et al., ICML 2021), lambda = 5.1e-3 (their value).
- ``vicreg``: VICReg (Bardes et al., ICLR 2022), invariance lambda = 25, variance mu = 25,
  covariance nu = 1, hinge gamma = 1, epsilon = 1e-4 (their values).
- ``yaware``: y-aware InfoNCE (Dufumier et al., MICCAI 2021): the positives of an anchor
  are weighted by a Gaussian kernel of a continuous variable (age), sigma = 5 (their
  best value for age in years).

Barlow Twins, VICReg and y-aware relate one vector per sample to one vector per sample,
so they apply to S alone (z_i vs z_j). L and CL relate a vector to M locations and CS a
location to locations: a cross-correlation or kernel over samples has no such form
there. Barlow Twins and VICReg are applied to z as it is (the paper's identity head),
without the 8192-d expander of their papers: a departure that keeps the encoder and its
64-d latent the same for every method.

All functions take embeddings as ``(B, D)`` (a latent per sample) unless said otherwise.
"""

from __future__ import annotations

import math

import torch

from mmssl.objectives.infonce import CriticConfig, NCEResult, clip_and_penalty, critic

CRITERIA = ("infonce", "dcl", "barlow", "vicreg", "yaware")
# parts each criterion applies to (module docstring)
CRITERION_PARTS = {
    "infonce": ("L", "CL", "CS", "S"),
    "dcl": ("L", "CL", "CS", "S"),
    "barlow": ("S",),
    "vicreg": ("S",),
    "yaware": ("S",),
}


def dcl_pooled(u: torch.Tensor, v: torch.Tensor, cfg: CriticConfig) -> NCEResult:
    """Decoupled contrastive loss with DIM-style pooled negatives (as ``nce_pooled``):
    every (p, q) pair of the same sample is a positive, every position of every other
    sample a negative. u: (B, D, P), v: (B, D, Q). Loss: mean over (b, p, q) of
    -s(b,p,b,q) + logsumexp over negatives. ``mi`` is not a bound here: NaN."""
    b = u.shape[0]
    scores, penalty = clip_and_penalty(critic(u, v), cfg)  # (B, P, B, Q)
    same = torch.eye(b, dtype=torch.bool, device=u.device)[:, None, :, None]
    pos = torch.diagonal(scores, dim1=0, dim2=2).permute(2, 0, 1)  # (B, P, Q)
    neg_lse = torch.logsumexp(scores.masked_fill(same, float("-inf")).flatten(2), dim=2, keepdim=True)  # (B, P, 1)
    loss = (neg_lse - pos).mean()
    return NCEResult(loss=loss, penalty=penalty, mi=torch.tensor(float("nan")))


def dcl_same_location(u: torch.Tensor, v: torch.Tensor, cfg: CriticConfig) -> NCEResult:
    """Decoupled loss for location m of u against location m of v (as
    ``nce_same_location``). u, v: (B, D, M)."""
    b, d, _ = u.shape
    raw = torch.einsum("bdm,cdm->mbc", u, v) / math.sqrt(d)  # (M, B, B)
    scores, penalty = clip_and_penalty(raw, cfg)
    eye = torch.eye(b, dtype=torch.bool, device=u.device)
    pos = torch.diagonal(scores, dim1=1, dim2=2)  # (M, B)
    neg_lse = torch.logsumexp(scores.masked_fill(eye, float("-inf")), dim=2)  # (M, B)
    return NCEResult(loss=(neg_lse - pos).mean(), penalty=penalty, mi=torch.tensor(float("nan")))


def standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(B, D) -> zero mean, unit variance along the batch (Barlow Twins' normalisation)."""
    return (z - z.mean(0)) / (z.std(0, unbiased=False) + eps)


def barlow_twins(za: torch.Tensor, zb: torch.Tensor, lam: float) -> torch.Tensor:
    """sum_i (1 - C_ii)^2 + lam * sum_{i != j} C_ij^2, C = standardize(za)^T standardize(zb) / B:
    the cross-correlation of the two embeddings (D, D). za, zb: (B, D)."""
    c = standardize(za).T @ standardize(zb) / za.shape[0]
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = (c - torch.diag(torch.diagonal(c))).pow(2).sum()
    return on + lam * off


def vicreg_variance(z: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    """mean_d max(0, gamma - sqrt(Var(z_d) + eps)): zero while every dimension's standard
    deviation is above gamma. z: (B, D)."""
    return torch.relu(gamma - torch.sqrt(z.var(0) + eps)).mean()


def vicreg_covariance(z: torch.Tensor) -> torch.Tensor:
    """Sum of the squared off-diagonal covariances, divided by D. z: (B, D)."""
    b, d = z.shape
    zc = z - z.mean(0)
    cov = zc.T @ zc / (b - 1)
    return (cov - torch.diag(torch.diagonal(cov))).pow(2).sum() / d


def vicreg(za: torch.Tensor, zb: torch.Tensor, sim: float, var: float, cov: float, gamma: float,
           eps: float) -> torch.Tensor:
    """sim * MSE(za, zb) + var * (v(za) + v(zb)) + cov * (c(za) + c(zb)). za, zb: (B, D)."""
    invariance = torch.nn.functional.mse_loss(za, zb)
    variance = vicreg_variance(za, gamma, eps) + vicreg_variance(zb, gamma, eps)
    covariance = vicreg_covariance(za) + vicreg_covariance(zb)
    return sim * invariance + var * variance + cov * covariance


def yaware_weights(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B,) continuous values -> (B, B) row-normalised Gaussian kernel weights
    w_ij = K(y_i - y_j) / sum_k K(y_i - y_k). sigma 0: the identity (plain InfoNCE)."""
    if sigma <= 0:
        return torch.eye(len(y), dtype=y.dtype, device=y.device)
    diff = y[:, None] - y[None, :]
    return torch.softmax(-0.5 * (diff / sigma) ** 2, dim=1)


def yaware_infonce(u: torch.Tensor, v: torch.Tensor, y: torch.Tensor, sigma: float, cfg: CriticConfig) -> NCEResult:
    """y-aware InfoNCE between two views: anchor u_i against every v_j, the log-softmax of
    each j weighted by w_ij (``yaware_weights``):
    loss = -mean_i sum_j w_ij log( exp s_ij / sum_k exp s_ik ). u, v: (B, D); y: (B,).
    With sigma -> 0 the weights are the identity and this is InfoNCE with the positive in
    the denominator (``nce_pooled`` for one position)."""
    scores, penalty = clip_and_penalty(u @ v.T / math.sqrt(u.shape[1]), cfg)  # (B, B)
    log_p = torch.log_softmax(scores, dim=1)
    loss = -(yaware_weights(y.to(scores.dtype), sigma) * log_p).sum(1).mean()
    return NCEResult(loss=loss, penalty=penalty, mi=math.log(len(u)) - loss.detach())
