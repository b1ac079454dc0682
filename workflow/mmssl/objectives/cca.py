"""Deep CCA objective (Andrew et al. 2013; DCCAE, Wang et al. 2015).

For two batches of latents H1, H2 (B, d), centred over the batch:

    S11 = H1^T H1 / (B-1) + r I,   S22 = H2^T H2 / (B-1) + r I,   S12 = H1^T H2 / (B-1)
    T   = S11^{-1/2} S12 S22^{-1/2}
    corr = sum of the top-k singular values of T   (k = d: the trace norm of T)

The singular values of T are the sample canonical correlations (each in [0, 1]), so
corr <= k; the DCCA loss is -corr.

Numerics (the paper notes the CCA objective is unstable): everything runs in float64;
the inverse square roots use ``torch.linalg.eigh`` with a hand-written backward (the
Daleckii-Krein formula with closed-form divided differences), because autograd through
``eigh`` divides by eigenvalue gaps and returns inf/NaN when eigenvalues (nearly)
coincide, e.g. for collapsed latents whose covariance is ~ r I. The singular values use
``torch.linalg.svdvals``, whose gradient U V^T needs no gaps either (unlike the
eigen-decomposition of T^T T followed by a square root in the DCCAE code, whose gradient
blows up at zero correlations).

Caveat: with B - 1 <= d the centred batch has rank < d+1 and d sample canonical
correlations can be 1 whatever the data (the objective is then trivial). Use a batch
much larger than d, or a small k.
"""

from __future__ import annotations

import warnings

import torch


class _InvSqrtPSD(torch.autograd.Function):
    """S^{-1/2} of a symmetric positive-definite matrix, by eigh, with a gap-free backward."""

    @staticmethod
    def forward(ctx, s: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        lam, vec = torch.linalg.eigh(s)
        # ridge keeps lam >= r > 0; the clamp only guards round-off on indefinite input
        root = lam.clamp_min(torch.finfo(lam.dtype).tiny).sqrt()
        ctx.save_for_backward(root, vec)
        return (vec / root) @ vec.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        root, vec = ctx.saved_tensors
        # divided difference of f(l) = l^{-1/2}: (f(a) - f(b)) / (a - b) = -1 / (sqrt(a) sqrt(b) (sqrt(a) + sqrt(b))),
        # which equals f'(a) at a == b, so no branch and no division by a gap
        ra, rb = root[..., :, None], root[..., None, :]
        divided = -1.0 / (ra * rb * (ra + rb))
        g = 0.5 * (grad + grad.transpose(-1, -2))
        inner = vec.transpose(-1, -2) @ g @ vec
        return vec @ (divided * inner) @ vec.transpose(-1, -2)


def inv_sqrt_psd(s: torch.Tensor) -> torch.Tensor:
    """S: (d, d) symmetric positive definite -> S^{-1/2} (d, d), differentiable."""
    return _InvSqrtPSD.apply(s)


def cca_correlation(h1: torch.Tensor, h2: torch.Tensor, r: float = 1e-3, k: int | None = None) -> torch.Tensor:
    """Sum of the top-k canonical correlations between two batches of latents.

    h1: (B, d1), h2: (B, d2) (same B); r: ridge added to both covariances (r1 = r2 = r);
    k: number of correlations summed (None: all, min(d1, d2)). Returns a float64 scalar
    in [0, k]; the DCCA loss is its negative.
    """
    if h1.ndim != 2 or h2.ndim != 2 or h1.shape[0] != h2.shape[0]:
        raise ValueError(f"CCA needs two (B, d) batches with the same B, got {tuple(h1.shape)} and {tuple(h2.shape)}")
    b = h1.shape[0]
    if b < 2:
        raise ValueError(f"CCA needs a batch of at least 2 samples, got {b}")
    if r <= 0:
        raise ValueError(f"CCA ridge r must be > 0 (it keeps the covariances invertible), got {r}")
    n_corr = min(h1.shape[1], h2.shape[1])
    k = n_corr if k is None else k
    if not 1 <= k <= n_corr:
        raise ValueError(f"CCA k must be in [1, {n_corr}], got {k}")
    if b - 1 <= max(h1.shape[1], h2.shape[1]):
        warnings.warn(
            f"CCA on a batch of {b} with latent sizes {h1.shape[1]}, {h2.shape[1]}: B-1 <= d, so sample canonical "
            "correlations are trivially 1; use a larger batch or a smaller k",
            stacklevel=2,
        )
    a, c = h1.double(), h2.double()
    a = a - a.mean(0, keepdim=True)
    c = c - c.mean(0, keepdim=True)
    s11 = a.T @ a / (b - 1) + r * torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
    s22 = c.T @ c / (b - 1) + r * torch.eye(c.shape[1], dtype=c.dtype, device=c.device)
    s12 = a.T @ c / (b - 1)
    t = inv_sqrt_psd(s11) @ s12 @ inv_sqrt_psd(s22)
    corr = torch.linalg.svdvals(t)  # descending
    return corr[:k].sum()
