"""``yaware``: y-aware InfoNCE (Dufumier et al., MICCAI 2021; official code
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

S only (latent-only). It needs the variable of every sample with each batch: the store
index column ``model.criteria.yaware.column`` (``metadata_columns``), which the loader
passes as ``meta``. Settings: ``model.criteria.yaware``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch.nn import functional as F

from mmssl.objectives.criteria.base import LatentCriterion


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


class YAware(LatentCriterion):
    """y-aware InfoNCE on the two latents of S, weighted by a continuous variable."""

    name: ClassVar[str] = "yaware"
    schema_section: ClassVar[str | None] = "yaware"

    @property
    def metadata_columns(self) -> tuple[str, ...]:
        return (self.settings["column"],)

    def latent(self, za: torch.Tensor, zb: torch.Tensor, meta: torch.Tensor | None) -> torch.Tensor:
        if meta is None:
            raise ValueError(f"criterion {self.name} needs the metadata column {self.settings['column']!r} "
                             "with every batch")
        return yaware(za, zb, meta, float(self.settings["sigma"]), float(self.settings["temperature"]))
