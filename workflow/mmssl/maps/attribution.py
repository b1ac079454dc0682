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

Many decisions at once (:func:`contrast_maps`, the permutation null). IG is linear in the
output: for logit = w . z(x) + b, IG(x; w) = sum_k w_k IG(x; z_k), and the path gradient
of w . z is the vector-Jacobian product of the encoder with w. So the maps of J decisions
share every forward pass along the path (one per path point and subject) and need one
batched backward pass per group of decisions (``torch.autograd.grad(...,
is_grads_batched=True)``): the cost is one forward plus J backward passes, not J
forward + backward passes; the same Gauss-Legendre points and weights as Captum's, so
decision 0's map is Captum's up to float error (tests/test_maps.py checks it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from torch import nn

from mmssl.progress import Progress

log = logging.getLogger(__name__)

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


def gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) of ``steps`` Gauss-Legendre points on [0, 1], as Captum's
    ``gausslegendre`` method builds them: IG = x * sum_t weights[t] * grad f(alphas[t] x)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return 0.5 * (nodes + 1.0), 0.5 * weights


@dataclass
class ContrastMaps:
    """Maps of J decisions, each a contrast of the subjects' attributions.

    maps: (J, *S) sum_i coefficients[j, i] IG(x_i; w_j). totals: (n,) each volume's summed
    attribution under decision 0; logits: (n,) decision 0's logit f(x) (with its bias);
    gaps: (n,) f(x) - f(0) under decision 0. subjects: (n, *S) decision 0's attribution of
    every volume (channels summed), only when asked for (the benchmark's bootstrap)."""

    maps: np.ndarray
    totals: np.ndarray
    logits: np.ndarray
    gaps: np.ndarray
    subjects: np.ndarray | None = None

    def completeness_error(self) -> float:
        """max |sum attribution - (f(x) - f(0))| / max |f(x) - f(0)| under decision 0."""
        return float(np.max(np.abs(self.totals - self.gaps)) / max(float(np.max(np.abs(self.gaps))), 1e-12))


# the null's batched backward passes hold at most this many times ``batch_size`` volume
# gradients at once (decisions x path points x subjects)
VJP_VOLUMES_PER_BATCH = 16


def contrast_maps(encoder: nn.Module, weights: np.ndarray, bias: float, coefficients: np.ndarray,
                  volumes: np.ndarray, steps: int, batch_size: int, device: torch.device,
                  keep_subjects: bool = False) -> ContrastMaps:
    """Integrated Gradients (zero baseline, ``steps`` Gauss-Legendre points) of J linear
    decisions ``weights`` (J, D) on the frozen ``encoder``'s z, for the volumes (n, C, *S),
    combined per decision with ``coefficients`` (J, n): maps[j] = sum_i coefficients[j, i]
    * IG(x_i; weights[j]) (channels summed). ``bias``: decision 0's, for its logits. A chunk
    of subjects times the path points fills about ``batch_size`` volumes per forward pass;
    the backward passes take the decisions in groups (see VJP_VOLUMES_PER_BATCH)."""
    encoder = encoder.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    n, spatial = len(volumes), tuple(volumes.shape[2:])
    J = len(weights)
    alphas, quad = gauss_legendre(steps)
    w = torch.as_tensor(np.asarray(weights), dtype=torch.float32, device=device)
    a = torch.as_tensor(alphas, dtype=torch.float32, device=device)
    q = torch.as_tensor(quad, dtype=torch.float32, device=device)
    coef = np.asarray(coefficients, np.float64)
    maps = np.zeros((J, int(np.prod(spatial))), np.float64)
    totals, logits, gaps = np.zeros(n), np.zeros(n), np.zeros(n)
    subjects = np.zeros((n, *spatial), np.float32) if keep_subjects else None
    per_chunk = max(1, batch_size // steps)
    with torch.no_grad():
        z0 = encoder(torch.zeros((1, *volumes.shape[1:]), device=device)).z[0]
    progress = Progress(f"integrated gradients ({J} decision(s), {steps} steps), subjects", n, log,
                        every=max(1, -(-n // 4)))
    done = 0
    for part in chunks(n, per_chunk):
        x = torch.as_tensor(np.asarray(volumes[part], dtype=np.float32), device=device)  # (P, C, *S)
        P = len(x)
        path = (a.view(-1, *([1] * x.dim())) * x.unsqueeze(0)).reshape(steps * P, *x.shape[1:]).requires_grad_(True)
        z = encoder(path).z  # (T*P, D), t-major
        group = max(1, (VJP_VOLUMES_PER_BATCH * batch_size) // (steps * P))
        for start in range(0, J, group):
            wg = w[start:start + group]  # (G, D)
            G = len(wg)
            last = start + G >= J
            if G == 1:
                (g,) = torch.autograd.grad(z, path, wg[0].expand_as(z), retain_graph=not last)
                g = g.unsqueeze(0)
            else:
                cot = wg.unsqueeze(1).expand(G, *z.shape)
                (g,) = torch.autograd.grad(z, path, cot, retain_graph=not last, is_grads_batched=True)
            g = g.reshape(G, steps, P, *x.shape[1:])
            attr = (torch.einsum("t,gtp...->gp...", q, g) * x.unsqueeze(0)).sum(2)  # (G, P, *S)
            c = torch.as_tensor(coef[start:start + G, part], dtype=torch.float32, device=device)  # (G, P)
            maps[start:start + G] += torch.einsum("gp,gpv->gv", c, attr.flatten(2)).double().cpu().numpy()
            if start == 0:
                totals[part] = attr[0].flatten(1).sum(1).double().cpu().numpy()
                if subjects is not None:
                    subjects[part] = attr[0].cpu().numpy()
            del g, attr
        with torch.no_grad():
            zx = encoder(x).z
            logits[part] = (zx @ w[0] + bias).double().cpu().numpy()
            gaps[part] = ((zx - z0) @ w[0]).double().cpu().numpy()
        done += len(x)
        progress.step(done)
    return ContrastMaps(maps.reshape(J, *spatial), totals, logits, gaps, subjects)


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering range(n)."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))
