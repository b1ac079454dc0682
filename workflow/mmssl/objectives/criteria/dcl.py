"""``dcl``: decoupled contrastive learning (Yeh et al., ECCV 2022): InfoNCE without the
positive in the denominator, on every part. Settings: ``model.criteria.dcl``.

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
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch.nn import functional as F

from mmssl.objectives.criteria.base import Criterion
from mmssl.objectives.infonce import CriticConfig, NCEResult, clip_and_penalty, critic

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


def dcl_one_way(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over the anchors a_i (unit rows) of -s(a_i, b_i) + log sum_{k != i} [exp s(a_i, b_k)
    + exp s(a_i, a_k)], s = a^T b / temperature. a, b: (N, D)."""
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
    return 0.5 * (dcl_one_way(a, b, temperature) + dcl_one_way(b, a, temperature))


class DCL(Criterion):
    """Decoupled contrastive: critic form on L, CL, CS (and S under ``s_form: critic``),
    the official latent-only form on S under ``s_form: official``."""

    name: ClassVar[str] = "dcl"
    parts: ClassVar[tuple[str, ...]] = ("L", "CL", "CS", "S")
    schema_section: ClassVar[str | None] = "dcl"

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        if settings["s_form"] not in DCL_S_FORMS:
            raise ValueError(f"model.criteria.dcl.s_form must be one of {list(DCL_S_FORMS)}, "
                             f"got {settings['s_form']!r}")

    @property
    def latent_s(self) -> bool:
        return self.settings["s_form"] == "official"

    def pooled(self, u: torch.Tensor, v: torch.Tensor, cfg: CriticConfig) -> NCEResult:
        return dcl_pooled(u, v, cfg)

    def same_location(self, u: torch.Tensor, v: torch.Tensor, cfg: CriticConfig) -> NCEResult:
        return dcl_same_location(u, v, cfg)

    def latent(self, za: torch.Tensor, zb: torch.Tensor, meta: torch.Tensor | None) -> torch.Tensor:
        return dcl_official(za, zb, float(self.settings["temperature"]))
