"""Criteria a taxonomy part can be trained with besides InfoNCE (issue 15; made to equal
the official code of each criterion in issue 21).

The part says *what* is related (L, CL, CS, S); the criterion says *how*. Settings live
under ``model.criteria.<name>`` in the config schema (the only home of their defaults).

- ``infonce``: the paper's (:mod:`mmssl.objectives.infonce`), every part.
- ``dcl``: decoupled contrastive learning (Yeh et al., ECCV 2022): InfoNCE without the
  positive in the denominator.

  * S (``s_form: official``, the default): the paper's eq. 6 with its defaults. Latents
    are L2-normalised, s = cosine / temperature (0.1); for anchor z_i of view a the
    negatives are the other samples of *both* views, 2(N - 1) of them:
    -s(a_i, b_i) + log sum_{k != i} [exp s(a_i, b_k) + exp s(a_i, a_k)], averaged over
    the anchors of each view and then over the two views (``dcl_official``). No critic
    scores, so no clipping and no score penalty. The paper writes one log over both
    negative sets; lightly's ``DCLLoss`` (the version read, 2024) sums two separate
    log-sum-exps, one per set, which is not the paper's equation: we follow the paper.
  * S with ``s_form: critic``, and always L, CL and CS: our separate critic (dot /
    sqrt(d)), clipping and penalty, negatives from the other view only (``dcl_pooled``,
    ``dcl_same_location``). L, CL and CS relate a vector to M locations (or locations to
    locations), where the official form (two views of one vector each, intra-view
    negatives) has no analogue, so they keep the critic form InfoNCE uses there.
- ``barlow``: Barlow Twins (Zbontar et al., ICML 2021) as the released code
  (facebookresearch/barlowtwins): each embedding batch-normalised as BatchNorm1d(affine=False)
  does, (z - mean) / sqrt(biased var + eps), eps 1e-5; C = za_n^T zb_n / B;
  sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2, lambda = 5.1e-3.
- ``vicreg``: VICReg (Bardes et al., ICLR 2022) as the released code
  (facebookresearch/vicreg): sim * MSE(za, zb) + var * (v(za) + v(zb)) / 2 +
  cov * (c(za) + c(zb)), v(z) = mean_d relu(gamma - sqrt(Var z_d + eps)) (unbiased
  variance), c(z) = sum of the squared off-diagonal covariances (after centring,
  / (B - 1)) divided by D; 25 / 25 / 1, gamma 1, eps 1e-4. The paper's eq. 6 writes
  mu [v(Z) + v(Z')] without the 1/2; its coefficients (25 / 25 / 1) were tuned with the
  released code, which halves the variance term, so we follow the code (without the 1/2
  the variance weight would in effect be 50).
- ``yaware``: y-aware InfoNCE (Dufumier et al., MICCAI 2021; official code
  Duplums/yAwareContrastiveLearning, ``GeneralizedSupervisedNTXenLoss``): both views'
  latents L2-normalised and concatenated (2N), s = cosine / temperature (0.1); every
  anchor has the 2N - 1 others as candidates, each weighted by an RBF kernel of a
  continuous variable (age; sigma 5 years), normalised per anchor over those 2N - 1
  (the paper's equation); loss = -(1/N) sum_{2N anchors} sum_k w_ik log softmax_k, the
  released code's scale (the sum of the two views' means). The released code divides
  its weight matrix by ``weights.sum(axis=1)`` with numpy broadcasting, which normalises
  columns, not rows; the paper normalises per anchor, and we follow the paper (the two
  agree when every anchor's kernel row has the same sum). sigma 0: the other view of the
  same sample is the only positive (NT-Xent).

Barlow Twins, VICReg, y-aware and the official DCL relate one vector per sample to one
vector per sample, so they apply to S (z_i vs z_j). They are symmetric in the two
sources, so S counts each unordered source pair once: the mean of the two orders, the
official value (``mmssl.objectives.contrastive``). Barlow Twins and VICReg are applied to
z as it is (the paper's identity head), without the 8192-d expander of their papers: a
departure that keeps the encoder and its 64-d latent the same for every method.

All functions take embeddings as ``(B, D)`` (a latent per sample) unless said otherwise.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

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
DCL_S_FORMS = ("official", "critic")


def dcl_pooled(u: torch.Tensor, v: torch.Tensor, cfg: CriticConfig) -> NCEResult:
    """Decoupled contrastive loss, critic form, with DIM-style pooled negatives (as
    ``nce_pooled``): every (p, q) pair of the same sample is a positive, every position of
    every other sample of v a negative. u: (B, D, P), v: (B, D, Q). Loss: mean over
    (b, p, q) of -s(b,p,b,q) + logsumexp over negatives. ``mi`` is not a bound here: NaN."""
    b = u.shape[0]
    scores, penalty = clip_and_penalty(critic(u, v), cfg)  # (B, P, B, Q)
    same = torch.eye(b, dtype=torch.bool, device=u.device)[:, None, :, None]
    pos = torch.diagonal(scores, dim1=0, dim2=2).permute(2, 0, 1)  # (B, P, Q)
    neg_lse = torch.logsumexp(scores.masked_fill(same, float("-inf")).flatten(2), dim=2, keepdim=True)  # (B, P, 1)
    loss = (neg_lse - pos).mean()
    return NCEResult(loss=loss, penalty=penalty, mi=torch.tensor(float("nan")))


def dcl_same_location(u: torch.Tensor, v: torch.Tensor, cfg: CriticConfig) -> NCEResult:
    """Decoupled loss, critic form, for location m of u against location m of v (as
    ``nce_same_location``). u, v: (B, D, M)."""
    b, d, _ = u.shape
    raw = torch.einsum("bdm,cdm->mbc", u, v) / math.sqrt(d)  # (M, B, B)
    scores, penalty = clip_and_penalty(raw, cfg)
    eye = torch.eye(b, dtype=torch.bool, device=u.device)
    pos = torch.diagonal(scores, dim1=1, dim2=2)  # (M, B)
    neg_lse = torch.logsumexp(scores.masked_fill(eye, float("-inf")), dim=2)  # (M, B)
    return NCEResult(loss=(neg_lse - pos).mean(), penalty=penalty, mi=torch.tensor(float("nan")))


def _dcl_one_way(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over the anchors a_i (unit rows) of -s(a_i, b_i) + log sum_{k != i} [exp s(a_i, b_k)
    + exp s(a_i, a_k)], s = a^T b / temperature."""
    n = a.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=a.device)
    cross = a @ b.T / temperature
    intra = a @ a.T / temperature
    neg = torch.cat([cross.masked_fill(eye, float("-inf")), intra.masked_fill(eye, float("-inf"))], dim=1)
    return (torch.logsumexp(neg, dim=1) - torch.diagonal(cross)).mean()


def dcl_official(za: torch.Tensor, zb: torch.Tensor, temperature: float) -> torch.Tensor:
    """Decoupled contrastive loss of Yeh et al. (eq. 6): cosine similarity / temperature,
    2(N - 1) negatives per anchor (the other samples of both views), averaged over both
    views as anchors. za, zb: (N, D). Symmetric in (za, zb)."""
    a, b = F.normalize(za, dim=1), F.normalize(zb, dim=1)
    return 0.5 * (_dcl_one_way(a, b, temperature) + _dcl_one_way(b, a, temperature))


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


def yaware_weights(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N,) continuous values of the samples -> (2N, 2N) weights of the y-aware loss over
    the two views' latents stacked [view a; view b]: w_ik = K(y_i - y_k) / sum_{j != i}
    K(y_i - y_j) for k != i, w_ii = 0, K(t) = exp(-t^2 / (2 sigma^2)); each row sums to 1.
    sigma 0: all weight on the other view of the same sample (NT-Xent)."""
    n = len(y)
    eye = torch.eye(2 * n, dtype=torch.bool, device=y.device)
    if sigma <= 0:
        return torch.roll(eye, n, dims=1).to(y.dtype)
    y2 = torch.cat([y, y])
    kernel = torch.exp(-0.5 * ((y2[:, None] - y2[None, :]) / sigma) ** 2).masked_fill(eye, 0.0)
    return kernel / kernel.sum(1, keepdim=True)


def yaware(za: torch.Tensor, zb: torch.Tensor, y: torch.Tensor, sigma: float, temperature: float) -> torch.Tensor:
    """y-aware contrastive loss (module docstring): za, zb (N, D) the two views, y (N,) the
    variable. -(1/N) sum_i sum_{k != i} w_ik log softmax_{k != i}(s_ik) over the 2N stacked,
    L2-normalised latents, s = cosine / temperature. Symmetric in (za, zb)."""
    n = za.shape[0]
    z = F.normalize(torch.cat([za, zb]), dim=1)
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    log_p = torch.log_softmax((z @ z.T / temperature).masked_fill(eye, float("-inf")), dim=1)
    w = yaware_weights(y.to(z.dtype), sigma)
    return -(w * log_p.masked_fill(eye, 0.0)).sum() / n
