"""Which voxels drive a representation's AD-vs-HC decision: Integrated Gradients of a
linear decision on the frozen latent, with respect to the input volume.

The decision function of source k is the probe's (:mod:`mmssl.evaluate.probe`): the
elastic-net logistic regression with the (C, l1_ratio) its Optuna study chose, refit on the
fold's train subjects that have k (standardised z, classes weighted to balance), so the map
explains the decision whose test ROC AUC the tables report. Folding the standardisation
into the weights gives logit(x) = w . z_k(x) + b, which is differentiable through the
frozen encoder (eval mode: BatchNorm uses its running
statistics, so a volume's logit does not depend on the others in its batch).

Integrated Gradients (Sundararajan et al. 2017, Captum's implementation) attributes
logit(x) - logit(x0) to the voxels: a_i = (x_i - x0_i) * mean over the straight path
x0 -> x of d logit / d x_i. The baseline x0 is all zeros: every volume is z-normalised in
the brain mask, so zero is the brain's mean intensity everywhere (and the background),
a brain without contrast. Completeness, sum_i a_i = logit(x) - logit(x0), holds up to the
path integral's quadrature error, which Captum returns per volume (``delta``).

Why Captum: its IntegratedGradients is the reference implementation (Gauss-Legendre path
points, chunked batches, convergence delta), and captum 0.9 needs only packages the lock
already pins (torch, numpy, matplotlib, tqdm, packaging).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from torch import nn

@dataclass(frozen=True)
class Decision:
    """logit = weight . z + bias on the raw latent z (the standardisation folded in).
    weight: (D,); fit_auc: ROC AUC on the subjects it was fitted on."""

    weight: np.ndarray
    bias: float
    fit_auc: float

    def logits(self, z: np.ndarray) -> np.ndarray:
        """z: (N, D) -> (N,) logits."""
        return np.asarray(z, dtype=np.float64) @ self.weight + self.bias


def fold_decision(scaler: StandardScaler, model: LogisticRegression, z: np.ndarray, positive: np.ndarray) -> Decision:
    """The fitted binary ``model`` on ``scaler``-standardised z as a Decision on the raw z;
    fit_auc is its ROC AUC on z (N, D) with labels ``positive`` (N,) bool, the rows it was
    fitted on."""
    # logit = coef . (z - mean) / scale + intercept = (coef / scale) . z + (intercept - coef . mean / scale)
    weight = (model.coef_[0] / scaler.scale_).astype(np.float64)
    bias = float(model.intercept_[0] - weight @ scaler.mean_)
    decision = Decision(weight=weight, bias=bias, fit_auc=0.0)
    return Decision(weight=weight, bias=bias, fit_auc=float(roc_auc_score(np.asarray(positive, bool), decision.logits(z))))


class VolumeLogit(nn.Module):
    """x: (B, C, *S) volumes of one source -> (B,) logits of the decision on the encoder's z."""

    def __init__(self, encoder: nn.Module, decision: Decision) -> None:
        super().__init__()
        self.encoder = encoder.eval()
        # the encoder is frozen: gradients are wanted for the input only
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        device = next(self.encoder.parameters()).device
        self.register_buffer("weight", torch.as_tensor(decision.weight, dtype=torch.float32, device=device))
        self.bias = float(decision.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).z @ self.weight + self.bias


def integrated_gradients(forward: nn.Module, x: torch.Tensor, steps: int,
                         batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrated Gradients of ``forward`` ((B, ...) -> (B,)) at x (B, ...) from the zero
    baseline, with ``steps`` path points evaluated ``batch_size`` volumes at a time.
    Returns (attributions like x, delta (B,)): delta = sum of attributions - (f(x) - f(0)),
    the quadrature error."""
    from captum.attr import IntegratedGradients  # only where attributions are computed

    ig = IntegratedGradients(forward)
    attr, delta = ig.attribute(x, baselines=torch.zeros_like(x), n_steps=steps, internal_batch_size=batch_size,
                               return_convergence_delta=True)
    return attr.detach(), delta.detach()


@dataclass
class GroupAttribution:
    """Per-group sums of attribution volumes, accumulated chunk by chunk (a 64^3 float
    volume per test subject would otherwise all be held at once). sums: (2, *S) for
    (negative, positive); counts: (2,); logits: every volume's logit (f(x)); gaps: every
    volume's f(x) - f(0); deltas: every volume's IG delta."""

    sums: np.ndarray
    counts: np.ndarray
    logits: list[float]
    gaps: list[float]
    deltas: list[float]

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> GroupAttribution:
        return cls(np.zeros((2, *shape), np.float64), np.zeros(2, np.int64), [], [], [])

    def add(self, attr: np.ndarray, positive: np.ndarray, logits: np.ndarray, gaps: np.ndarray,
            deltas: np.ndarray) -> None:
        """attr: (n, *S) attributions (channels summed); positive: (n,) bool."""
        for g in (0, 1):
            mine = positive == bool(g)
            self.sums[g] += attr[mine].sum(0)
            self.counts[g] += int(mine.sum())
        self.logits += logits.tolist()
        self.gaps += gaps.tolist()
        self.deltas += deltas.tolist()

    def difference(self) -> np.ndarray:
        """(*S) mean attribution of the positive group minus that of the negative group."""
        if (self.counts == 0).any():
            raise ValueError(f"a group has no volume (counts negative, positive: {self.counts.tolist()})")
        return (self.sums[1] / self.counts[1] - self.sums[0] / self.counts[0]).astype(np.float32)

    def completeness_error(self) -> float:
        """max |delta| / max |f(x) - f(0)| over the volumes: the quadrature's relative error."""
        return float(np.max(np.abs(self.deltas)) / max(float(np.max(np.abs(self.gaps))), 1e-12))


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering range(n)."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def attribute_groups(forward: VolumeLogit, volumes: np.ndarray, positive: np.ndarray, steps: int, batch_size: int,
                     device: torch.device) -> GroupAttribution:
    """Integrated Gradients of every volume (n, C, *S) (any array; read chunk by chunk), summed
    over channels and accumulated per group (``positive`` (n,) bool)."""
    acc = GroupAttribution.empty(tuple(volumes.shape[2:]))
    # a chunk of subjects times the path points fills about one internal batch
    per_chunk = max(1, batch_size // steps)
    for part in chunks(len(volumes), per_chunk):
        x = torch.as_tensor(np.asarray(volumes[part], dtype=np.float32), device=device)
        attr, delta = integrated_gradients(forward, x, steps, batch_size)
        with torch.no_grad():
            fx = forward(x)
            gap = fx - forward(torch.zeros_like(x))
        acc.add(attr.sum(1).cpu().numpy(), positive[part], fx.cpu().numpy(), gap.cpu().numpy(), delta.cpu().numpy())
    return acc
