"""Baselines of the paper (2.3, Fig. 3): Supervised, AE, DCCAE, L-CCA, S-AE and MMVAE.

Each is registered under its name and trains the same DCGAN encoders as the contrastive
methods; evaluation reads ``embed`` (the raw z; MMVAE: the posterior mean).

Settings read from ``ModelSettings.extra`` (config ``model.extra.<key>``; every default
is the schema's, filled in by ``ModelSettings``):

- ``n_classes``: classes of the Supervised linear heads (null: the training step sets it
  from the store's labels; a Supervised model built by hand must be given it).
- ``recon``: source -> ``"bce"`` | ``"mse"`` (default ``"bce"`` for 2D sources, [0, 1]
  images; ``"mse"`` for 3D sources, standardized volumes).
- ``recon_weight`` (1.0): weight of the reconstruction term (AE, DCCAE, S-AE).
- ``cca_weight`` (1.0), ``cca_r`` (1e-3), ``cca_form`` (``frobenius``), ``cca_k``
  (null = all), ``cca_momentum`` (0.99): DCCAE and L-CCA. The CCA term is computed from
  the canonical correlations of covariances carried across batches (exponential moving
  averages with weight ``cca_momentum`` on the past: ~199 batches pooled; stochastic deep
  CCA, Wang et al. 2015, see ``mmssl.objectives.cca``): ``frobenius`` = the root of the
  sum of the squares of the k largest (with all of them, the Frobenius norm of T: what
  the authors' code computes, -sqrt(trace(T^T T)); its top-k path raises, so no top-k run
  was possible), ``topk`` = their sum (DCCA, Andrew et al. 2013). The paper gives no
  formula, so the authors' code settles the default (frobenius over all). Per batch
  (``cca_momentum: 0``) the term carries no signal at batch 64 with a 64-d latent: 64
  samples can be aligned in 63 directions, so the top 10 of two independent latents sum
  to 9.99 of 10. The form and k that ran are in the model's settings saved in
  ``model.pt`` (``model.extra``) and in the module's repr.
- ``mmvae_k`` (10): importance samples per unimodal posterior.
- ``mmvae_llik_scaling`` (``"auto"``): ``"auto"`` weights each source's log-likelihood
  by (largest source's element count) / (its element count), as Shi et al. do for
  MNIST-SVHN; ``"none"`` leaves them unweighted.
"""

from __future__ import annotations

import logging
import math
from itertools import combinations, permutations

import torch
from torch import nn
from torch.distributions import Laplace
from torch.nn import functional as F

from mmssl.models.decoders import DCGANDecoder
from mmssl.models.encoders import DCGANEncoder, init_weights
from mmssl.types import SourceSpec
from mmssl.objectives.base import MIN_SAMPLES, Meta, Method, ModelSettings, Presence, positions, rows_with, take
from mmssl.objectives.cca import RunningCCA
from mmssl.objectives.contrastive import ContrastiveMethod
from mmssl.objectives.registry import register

log = logging.getLogger(__name__)

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


# ---------------------------------------------------------------- settings helpers
def recon_kinds(sources: list[SourceSpec], settings: ModelSettings) -> dict[str, str]:
    """source -> "bce" | "mse" from ``extra["recon"]`` (its values checked by the schema),
    defaulting by dimensionality."""
    given = settings.extra["recon"]
    unknown = set(given) - {s.name for s in sources}
    if unknown:  # the schema cannot know the dataset's sources
        raise ValueError(f"model.extra.recon names unknown sources {sorted(unknown)}; sources are {[s.name for s in sources]}")
    return {s.name: given.get(s.name, "bce" if s.dims == 2 else "mse") for s in sources}


def _need_two_sources(name: str, sources: list[SourceSpec]) -> None:
    if len(sources) < 2:
        raise ValueError(f"method {name} is multi-source and needs two or more sources, got {[s.name for s in sources]}")


# ---------------------------------------------------------------- shared terms
def log_likelihood(out: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample log p(x | z), summed over elements. out, x: (N, C, *S) -> (N,).

    bce: Bernoulli with logits ``out`` (x in [0, 1]; for fractional x this is the
    cross-entropy form, still <= 0). mse: Gaussian with mean ``out`` and unit variance.
    """
    if kind == "bce":
        ll = -F.binary_cross_entropy_with_logits(out, x, reduction="none")
    else:
        ll = -0.5 * (out - x).pow(2) - _HALF_LOG_2PI
    return ll.flatten(1).sum(1)


def decoder_mean(out: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean of p(x | z) from the decoder output: sigmoid of logits (bce) or the output (mse)."""
    return torch.sigmoid(out) if kind == "bce" else out


def recon_loss(out: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over batch and elements, so the term stays O(1) beside InfoNCE terms whatever
    the image size (a per-sample sum would scale with 32^2 or 64^3 and drown them)."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(out, x)
    return F.mse_loss(out, x)


class Reconstruction(nn.Module):
    """One DCGAN decoder per source and the weighted reconstruction term."""

    def __init__(self, sources: list[SourceSpec], settings: ModelSettings) -> None:
        super().__init__()
        self.kinds = recon_kinds(sources, settings)
        self.weight = float(settings.extra["recon_weight"])
        self.decoders = nn.ModuleDict(
            {s.name: DCGANDecoder(s, latent=settings.latent, width=settings.width) for s in sources}
        )

    def forward(self, z: dict[str, torch.Tensor], x: dict[str, torch.Tensor]) -> torch.Tensor:
        """z: source -> (B, latent); x: source -> (B, C, *S). Sum over sources, weighted."""
        total = sum(recon_loss(self.decoders[s](z[s]), x[s], self.kinds[s]) for s in z)
        return self.weight * total


class CCATerm(nn.Module):
    """-(the CCA objective, ``cca_form`` over the ``cca_k`` largest canonical correlations)
    summed over unordered source pairs, weighted; one ``RunningCCA`` (covariances carried
    across batches) per pair."""

    def __init__(self, sources: list[str], settings: ModelSettings) -> None:
        super().__init__()
        self.weight = float(settings.extra["cca_weight"])
        self.r = float(settings.extra["cca_r"])
        k = settings.extra["cca_k"]
        self.k = None if k is None else int(k)
        self.momentum = float(settings.extra["cca_momentum"])
        self.form = str(settings.extra["cca_form"])
        self.pairs = list(combinations(sources, 2))
        d = settings.latent
        self.running = nn.ModuleList(RunningCCA(d, d, r=self.r, k=self.k, momentum=self.momentum, form=self.form)
                                    for _ in self.pairs)
        log.info("CCA term: form %s over %s canonical correlations, ridge %g, momentum %g, weight %g, pairs %s",
                 self.form, "all" if self.k is None else f"the top {self.k}", self.r, self.momentum, self.weight,
                 self.pairs)

    def forward(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        """z: source -> (B, latent) for every source of the method."""
        missing = {s for pair in self.pairs for s in pair} - set(z)
        if missing:
            raise ValueError(f"CCA term needs the latents of sources {sorted(missing)}")
        corr = [cca(z[a], z[b]) for cca, (a, b) in zip(self.running, self.pairs)]
        return -self.weight * torch.stack(corr).sum().to(next(iter(z.values())).dtype)


# ---------------------------------------------------------------- Supervised, AE, DCCAE
def present_batches(x: dict[str, torch.Tensor], present: Presence) -> dict[str, tuple[torch.Tensor | None, torch.Tensor]]:
    """source -> (rows, x over those rows) for each source at least MIN_SAMPLES samples
    have; rows is None when every sample has it."""
    out = {}
    for s, xs in x.items():
        rows = rows_with(present, (s,))
        if rows is None or len(rows) >= MIN_SAMPLES:
            out[s] = (rows, take(xs, rows))
    return out


class SupervisedMethod(Method):
    """Each encoder with its own linear head on z, trained with cross-entropy on the
    labels (uni-source; the discriminative bound). Term ``ce``: summed over sources, each
    over the samples that have it."""

    uses_labels = True

    def __init__(self, sources: list[SourceSpec], settings: ModelSettings) -> None:
        super().__init__(sources, settings)
        n_classes = settings.extra["n_classes"]
        if n_classes is None:
            raise ValueError("supervised needs model.extra.n_classes: the training step sets it from the store's labels "
                             "when they have two or more classes")
        self.classifiers = nn.ModuleDict({s: nn.Linear(settings.latent, n_classes) for s in self.sources})
        init_weights(self.classifiers)

    def logits(self, x: torch.Tensor, source: str) -> torch.Tensor:
        """x: (B, C, *S) -> (B, n_classes)."""
        return self.classifiers[source](self.encoders[source](x).z)

    def losses(self, x: dict[str, torch.Tensor], y: torch.Tensor | None = None,
               present: Presence = None, meta: Meta = None) -> dict[str, torch.Tensor]:
        if y is None:
            raise ValueError("method 'supervised' trains on labels: losses(x, y) needs y (B,) class indices")
        parts = [F.cross_entropy(self.logits(xs, s), take(y, rows)) for s, (rows, xs) in present_batches(x, present).items()]
        return {"ce": sum(parts[1:], parts[0])} if parts else {}


class AutoencoderMethod(Method):
    """One autoencoder per source (uni-source). Term ``recon``, each source over the
    samples that have it."""

    def __init__(self, sources: list[SourceSpec], settings: ModelSettings) -> None:
        super().__init__(sources, settings)
        self.reconstruction = Reconstruction(sources, settings)

    def latents(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {s: self.encoders[s](xs).z for s, xs in x.items()}

    def losses(self, x: dict[str, torch.Tensor], y: torch.Tensor | None = None,
               present: Presence = None, meta: Meta = None) -> dict[str, torch.Tensor]:
        xs = {s: xs for s, (_, xs) in present_batches(x, present).items()}
        return {"recon": self.reconstruction(self.latents(xs), xs)} if xs else {}


def require_complete(name: str, present: Presence) -> None:
    """Methods without ``supports_missing`` are given complete samples by the trainer; a
    partial batch reaching them is a bug, not data to train on."""
    if rows_with(present, list(present or {})) is not None:
        raise ValueError(f"method {name} trains on complete samples only (train.incomplete_samples has no effect on it), "
                         "but was given a batch where some samples lack a source")


class DCCAEMethod(AutoencoderMethod):
    """Autoencoders plus deep CCA between the sources' z (Wang et al. 2015). Terms
    ``recon``, ``cca``. CCA needs every source of a sample: complete samples only."""

    supports_missing = False

    def __init__(self, sources: list[SourceSpec], settings: ModelSettings) -> None:
        _need_two_sources("DCCAE", sources)
        super().__init__(sources, settings)
        self.cca = CCATerm(self.sources, settings)

    def losses(self, x: dict[str, torch.Tensor], y: torch.Tensor | None = None,
               present: Presence = None, meta: Meta = None) -> dict[str, torch.Tensor]:
        require_complete("DCCAE", present)
        z = self.latents(x)
        return {"recon": self.reconstruction(z, x), "cca": self.cca(z)}


# ---------------------------------------------------------------- contrastive + extra term
# L-CCA and S-AE reuse the raw z of the contrastive encoder pass (``Projected.z``) for
# their CCA / reconstruction term instead of encoding (and updating BatchNorm) twice.
class LCCAMethod(ContrastiveMethod):
    """The L objective (z_i vs locations of its own c_i) plus deep CCA between sources.
    Terms ``L``, ``penalty`` (when on), ``cca``. Complete samples only (CCA)."""

    supports_missing = False

    def __init__(self, sources: list[SourceSpec], settings: ModelSettings) -> None:
        _need_two_sources("L-CCA", sources)
        super().__init__(sources, settings, ("L",))
        self.cca = CCATerm(self.sources, settings)

    def losses(self, x: dict[str, torch.Tensor], y: torch.Tensor | None = None,
               present: Presence = None, meta: Meta = None) -> dict[str, torch.Tensor]:
        require_complete("L-CCA", present)
        proj = self.project(x)
        terms = self.contrastive_terms(proj, None)
        terms["cca"] = self.cca({s: p.z for s, p in proj.items()})
        return terms


class SAEMethod(ContrastiveMethod):
    """The S objective (z_i vs z_j) plus one autoencoder per source. Terms ``S``,
    ``penalty`` (when on), ``recon``. With missing sources, S runs over the samples that
    share a pair of sources and each autoencoder over every sample that has its source."""

    def __init__(self, sources: list[SourceSpec], settings: ModelSettings) -> None:
        super().__init__(sources, settings, ("S",))  # ContrastiveMethod checks for two sources
        self.reconstruction = Reconstruction(sources, settings)

    def needed_rows(self, present: Presence) -> dict[str, torch.Tensor | None]:
        # every sample with a source feeds its autoencoder, not only those S pairs up
        return {s: rows_with(present, (s,)) for s in self.sources}

    def losses(self, x: dict[str, torch.Tensor], y: torch.Tensor | None = None,
               present: Presence = None, meta: Meta = None) -> dict[str, torch.Tensor]:
        proj = self.project(x, present)
        terms = self.contrastive_terms(proj, present)
        if proj:
            terms["recon"] = self.reconstruction({s: p.z for s, p in proj.items()},
                                                 {s: take(x[s], p.rows) for s, p in proj.items()})
        return terms


# ---------------------------------------------------------------- MMVAE
class MMVAEMethod(Method):
    r"""Mixture-of-experts multimodal VAE (Shi et al. 2019) trained with the looser,
    stratified IWAE bound (``m_iwae_looser`` in their code).

    Posterior q(z | x_m) = Laplace(mu_m, s_m) per source m, as in Shi et al.; the DCGAN
    encoder is built with 2 * latent outputs, split into mu_m and a raw scale a_m with
    s_m = softmax(a_m) * latent + 1e-6 (their parameterisation: the scales average 1,
    which keeps the posteriors from collapsing). Prior p(z) = Laplace(0, 1) per dim.
    Joint posterior: the mixture q(z | X) = (1/M) sum_m q(z | x_m).

    Bound, for M sources and K samples z_m^k ~ q(z | x_m) drawn from each expert
    (stratified sampling of the mixture):

        L(X) = (1/M) sum_m log (1/K) sum_k w_m^k,
        log w_m^k = log p(z_m^k) + sum_d lambda_d log p(x_d | z_m^k) - log q(z_m^k | X),

    so every expert's samples reconstruct *all* sources (cross-modal reconstruction).
    The average over m sits outside the log: this is the looser bound (by Jensen it is
    <= the IWAE of the mixture with all M*K samples in one log-mean-exp). lambda_d is 1
    or Shi's balancing weight (``mmvae_llik_scaling``). log p(x_d | z): Bernoulli
    (``bce`` sources) or unit-variance Gaussian (``mse`` sources), summed over elements
    (Shi et al. use a Laplace likelihood of scale 0.75 on sigmoid means; we follow the
    per-source reconstruction setting shared with the other baselines instead).
    Gradients: plain reparameterised IWAE (no DReG). Term ``iwae`` = -mean_b L(X_b) / N,
    N = the summed element count of the sources (see ``losses``).
    """

    def __init__(self, sources: list[SourceSpec], settings: ModelSettings) -> None:
        super().__init__(sources, settings)
        # replaces the base encoders: 2 * latent outputs = two heads (mean, scale) from the
        # last conv, as Shi et al.'s c1 / c2 layers
        self.encoders = nn.ModuleDict(
            {s.name: DCGANEncoder(s, latent=2 * settings.latent, width=settings.width) for s in sources}
        )
        self.kinds = recon_kinds(sources, settings)
        self.k = int(settings.extra["mmvae_k"])
        # element count of one sample of each source: the likelihood weights and the
        # per-element normalisation of the bound (over the sources a sample has)
        self.numel = {s.name: s.channels * s.size**s.dims for s in sources}
        self.llik_weights = self._llik_weights(self.numel, str(settings.extra["mmvae_llik_scaling"]))
        self.n_elements = sum(self.numel.values())
        self.decoders = nn.ModuleDict(
            {s.name: DCGANDecoder(s, latent=settings.latent, width=settings.width) for s in sources}
        )

    @staticmethod
    def _llik_weights(numel: dict[str, int], mode: str) -> dict[str, float]:
        """mode "none" | "auto" (the schema's enum)."""
        if mode == "none":
            return {name: 1.0 for name in numel}
        return {name: max(numel.values()) / n for name, n in numel.items()}

    def posterior(self, x: torch.Tensor, source: str) -> Laplace:
        """x: (B, C, *S) -> q(z | x) with batch shape (B, latent)."""
        loc, raw = self.encoders[source](x).z.chunk(2, dim=1)
        scale = F.softmax(raw, dim=1) * raw.shape[1] + 1e-6
        return Laplace(loc, scale)

    def _log_likelihood(self, z: torch.Tensor, x: torch.Tensor, source: str) -> torch.Tensor:
        """lambda_d log p(x_d | z) for z: (K, B, latent), x: (B, C, *S) -> (K, B)."""
        k = z.shape[0]
        out = self.decoders[source](z.flatten(0, 1))  # (K*B, C, *S)
        target = x.unsqueeze(0).expand(k, *x.shape).flatten(0, 1)
        return self.llik_weights[source] * log_likelihood(out, target, self.kinds[source]).view(k, -1)

    def bound(self, x: dict[str, torch.Tensor], k: int | None = None) -> torch.Tensor:
        """The stratified IWAE bound L(X) per sample: (B,). See the class docstring."""
        return self.subset_bound({s: self.posterior(x[s], s) for s in self.sources}, x, k)

    def subset_bound(self, qs: dict[str, Laplace], x: dict[str, torch.Tensor], k: int | None = None) -> torch.Tensor:
        """L(X) over the sources in ``qs`` only: the mixture of their posteriors, each of
        whose samples reconstructs each of them (MultiVae's subset posterior for the MoE
        model). qs: source -> q(z | x_s), batch shape (n, latent); x: source -> (n, C, *S)."""
        k = self.k if k is None else k
        first = next(iter(qs.values()))
        prior = Laplace(torch.zeros_like(first.loc), torch.ones_like(first.scale))
        per_expert = []
        for m in qs:
            z = qs[m].rsample((k,))  # (K, n, latent)
            log_pz = prior.log_prob(z).sum(-1)
            log_qz = torch.logsumexp(torch.stack([q.log_prob(z).sum(-1) for q in qs.values()]), 0) - math.log(len(qs))
            log_px = sum(self._log_likelihood(z, x[d], d) for d in qs)
            log_w = log_pz + log_px - log_qz  # (K, n)
            per_expert.append(torch.logsumexp(log_w, 0) - math.log(k))
        return torch.stack(per_expert).mean(0)

    def losses(self, x: dict[str, torch.Tensor], y: torch.Tensor | None = None,
               present: Presence = None, meta: Meta = None) -> dict[str, torch.Tensor]:
        """``iwae``: -L(X) averaged over the batch, in nats per data element (divided by
        the summed element count of the sources). Same optimum; but RAdam's first steps
        are un-normalised momentum-SGD steps, and the raw per-sample bound (~10^5 nats
        for two 64^3 volumes) makes them diverge at once.

        With missing sources each sample's bound is over the sources it has (the subset
        posterior), divided by their element count; each encoder runs once, on the
        samples that have its source, and the samples are grouped by which sources they
        have."""
        if present is None or rows_with(present, self.sources) is None:
            return {"iwae": -self.bound(x).mean() / self.n_elements}
        passes = present_batches(x, present)
        posts = {s: self.posterior(xs, s) for s, (_, xs) in passes.items()}
        patterns = torch.stack([present[s] for s in self.sources], 1)  # (B, M)
        total, count = None, 0
        for pattern in torch.unique(patterns, dim=0):
            names = [s for s, on in zip(self.sources, pattern.tolist()) if on and s in posts]
            rows = (patterns == pattern).all(1).nonzero().squeeze(1)
            if not names:
                continue
            qs = {}
            for s in names:
                pos = positions(present, s, rows, passes[s][0])
                qs[s] = Laplace(take(posts[s].loc, pos), take(posts[s].scale, pos))
            xs = {s: x[s][rows] for s in names}
            elements = sum(self.numel[s] for s in names)
            part = -self.subset_bound(qs, xs).sum() / elements
            total = part if total is None else total + part
            count += len(rows)
        return {"iwae": total / count} if total is not None else {}

    @torch.no_grad()
    def embed(self, x: torch.Tensor, source: str) -> torch.Tensor:
        """Posterior mean (the Laplace location): (B, C, *S) -> (B, latent)."""
        return self.posterior(x, source).loc

    @torch.no_grad()
    def reconstruct(self, x: dict[str, torch.Tensor]) -> dict[tuple[str, str], torch.Tensor]:
        """(from, to) -> mean of p(x_to | z = posterior mean of x_from): (B, C_to, *S_to)."""
        z = {s: self.posterior(x[s], s).loc for s in self.sources}
        return {(a, b): decoder_mean(self.decoders[b](z[a]), self.kinds[b]) for a, b in self._all_pairs()}

    def _all_pairs(self) -> list[tuple[str, str]]:
        return [(s, s) for s in self.sources] + list(permutations(self.sources, 2))


# ---------------------------------------------------------------- registry
# each class is its own builder: Class(sources, settings) -> Method
BASELINES = {
    "supervised": SupervisedMethod,
    "AE": AutoencoderMethod,
    "DCCAE": DCCAEMethod,
    "L-CCA": LCCAMethod,
    "S-AE": SAEMethod,
    "MMVAE": MMVAEMethod,
}
for _name, _cls in BASELINES.items():
    register(_name)(_cls)
