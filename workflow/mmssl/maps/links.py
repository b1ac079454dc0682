"""Cross-modal link maps of the methods with a CL or CS part: where a source's local
embeddings agree with another source's latent.

For source a, each location m of its local map (the side-8 layer: M = 8^3 locations in
3D) has an embedding u_c[a][:, m] (D,), the local head's output; the other source b has
the latent embedding u_z[b] (D,), the latent head's output. Their score is the training
critic's, u_c[a][:, m] . u_z[b] / sqrt(D) (before the AMDIM clipping, a monotone squash),
averaged over the test subjects having both a and b, then over the other sources b. The
8^3 map is interpolated (trilinear) onto the volume grid: location m of a stride-2^k
stack of kernel-4, padding-1 convolutions is centred on the block of 2^k input voxels it
summarises, which is exactly F.interpolate's ``align_corners=False`` correspondence.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmssl.objectives.base import Method
from mmssl.objectives.registry import parse_contrastive

# the parts whose loss scores a source's locations against another source
LINK_PARTS = ("CL", "CS")


def has_links(method: str) -> bool:
    """Whether ``method`` is a contrastive combination with a CL or CS part (e.g. L-CL, CS@dcl)."""
    parts = parse_contrastive(method)
    return parts is not None and any(p in parts for p in LINK_PARTS)


@torch.no_grad()
def local_embeddings(model: Method, source: str, x: torch.Tensor) -> torch.Tensor:
    """x: (n, C, *S) -> u_c (n, D, M): the local head on the encoder's side-8 map, as
    :meth:`mmssl.objectives.contrastive.ContrastiveMethod.project` computes it."""
    heads = getattr(model, "local_heads", None)
    if heads is None or source not in heads:
        raise ValueError(f"method {type(model).__name__} has no local embeddings of {source!r} (no CL/CS/L part)")
    return heads[source](model.encoders[source](x).c).flatten(2)


@torch.no_grad()
def latent_embedding(model: Method, source: str, x: torch.Tensor) -> torch.Tensor:
    """x: (n, C, *S) -> u_z (n, D, 1): the latent head on the encoder's z."""
    return model.latent_heads[source](model.encoders[source](x).z).unsqueeze(2)


def critic_scores(u_c: torch.Tensor, u_z: torch.Tensor) -> torch.Tensor:
    """u_c: (n, D, M), u_z: (n, D, 1) -> (n, M) scores u_c . u_z / sqrt(D) per location."""
    return (u_c * u_z).sum(1) / math.sqrt(u_c.shape[1])


def upsample_locations(scores: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """scores: (*L) on the location grid (8, 8[, 8]) -> (*shape) on the volume grid, linear
    interpolation (edge values extended over the outer half-blocks)."""
    mode = "trilinear" if scores.dim() == 3 else "bilinear"
    return F.interpolate(scores[None, None].float(), size=tuple(shape), mode=mode, align_corners=False)[0, 0]
