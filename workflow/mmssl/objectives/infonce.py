"""InfoNCE estimators with the separate (scaled dot-product) critic of the paper (2.2)
and AMDIM-style score clipping and squared-score penalty (paper 3.3, AMDIM).

Embeddings are laid out as ``(B, D, P)``: batch, embedding dim, positions (locations of
a convolutional map, or 1 for a latent vector).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CriticConfig:
    """clip: bound c of c*tanh(s/c), or None for no clipping. penalty: weight of mean(s^2)
    over the raw scores of a term (AMDIM uses 20 and 0.04). No defaults: the values are
    ``model.clip`` and ``model.penalty`` of the config schema (their only home)."""

    clip: float | None
    penalty: float


@dataclass
class NCEResult:
    """loss: the InfoNCE loss (scalar). penalty: the (weighted) squared-score penalty.
    mi: the InfoNCE lower bound on mutual information, log(K) - loss, where K is the
    number of candidates in each softmax (so mi <= log K always)."""

    loss: torch.Tensor
    penalty: torch.Tensor
    mi: torch.Tensor


def critic(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Separate critic f(u, v) = u^T v / sqrt(D) for every pair of samples and positions.

    u: (B, D, P), v: (B, D, Q) -> scores (B, P, B, Q).
    """
    return torch.einsum("bdp,cdq->bpcq", u, v) / math.sqrt(u.shape[1])


def clip_and_penalty(scores: torch.Tensor, cfg: CriticConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(clipped scores, weighted mean squared raw score): AMDIM's clipping and penalty."""
    penalty = cfg.penalty * scores.pow(2).mean()  # on raw scores, as in AMDIM
    if cfg.clip is not None:
        scores = cfg.clip * torch.tanh(scores / cfg.clip)
    return scores, penalty


def nce_pooled(u: torch.Tensor, v: torch.Tensor, cfg: CriticConfig) -> NCEResult:
    """DIM/AMDIM InfoNCE: every (p, q) position pair of the same sample is a positive; its
    negatives are all positions of every other sample in the batch, pooled in one softmax.

    u: (B, D, P) anchors, v: (B, D, Q) targets. Each softmax has K = 1 + (B-1)Q candidates.
    """
    b, _, _ = u.shape
    q = v.shape[2]
    scores, penalty = clip_and_penalty(critic(u, v), cfg)  # (B, P, B, Q)
    same = torch.eye(b, dtype=torch.bool, device=u.device)[:, None, :, None]  # (B,1,B,1)
    pos = torch.diagonal(scores, dim1=0, dim2=2).permute(2, 0, 1)  # (B, P, Q)
    neg = scores.masked_fill(same, float("-inf")).flatten(2)  # (B, P, B*Q)
    neg_lse = torch.logsumexp(neg, dim=2, keepdim=True)  # (B, P, 1)
    loss = (torch.logaddexp(pos, neg_lse) - pos).mean()
    k = 1 + (b - 1) * q
    return NCEResult(loss=loss, penalty=penalty, mi=math.log(k) - loss.detach())


def nce_same_location(u: torch.Tensor, v: torch.Tensor, cfg: CriticConfig) -> NCEResult:
    """Location-to-same-location InfoNCE: position m of sample b in u is paired with
    position m of sample b in v; the candidates are position m of every sample in v.

    u, v: (B, D, M). Each softmax has K = B candidates. Memory O(M B^2), not O(M^2 B^2),
    which keeps 3D maps (M = 512) cheap.
    """
    if u.shape != v.shape:
        raise ValueError(f"same-location NCE needs equal shapes, got {tuple(u.shape)} and {tuple(v.shape)}")
    b, d, m = u.shape
    raw = torch.einsum("bdm,cdm->mbc", u, v) / math.sqrt(d)  # (M, B, B)
    scores, penalty = clip_and_penalty(raw, cfg)
    target = torch.arange(b, device=u.device).repeat(m)
    loss = torch.nn.functional.cross_entropy(scores.reshape(m * b, b), target)
    return NCEResult(loss=loss, penalty=penalty, mi=math.log(b) - loss.detach())
