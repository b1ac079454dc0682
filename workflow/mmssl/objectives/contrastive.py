"""The four base contrastive objectives of the taxonomy (paper 2.3, Fig. 2) and any
combination of them.

- L:  latent z_i vs the locations of c_i (same source, Local DIM).
- CL: latent z_i vs the locations of c_j, i != j (cross-local).
- CS: locations of c_i vs locations of c_j, i != j (cross-spatial).
- S:  latent z_i vs latent z_j, i != j (cross-latent, CMC/SimCLR-like).

Cross-source terms are summed over ordered pairs (i, j), i != j, as in the paper's eq. 1
(InfoNCE, and the critic form of DCL: the anchor's source and the target's play different
roles, so i -> j and j -> i are different terms, as in the authors' code). A criterion
whose S term relates the latents alone (``Criterion.latent_s``: Barlow Twins, VICReg,
y-aware or the official DCL, :mod:`mmssl.objectives.criteria`) is symmetric in the two
sources and gives the same value for both orders; S then counts
each unordered pair {i, j} once, which is the mean of the two orders and the value of the
criterion's official code (summing both would double it). Each part is weighted by alpha
(``ModelSettings.weights``), and so is its penalty.

Missing sources (``present``, see :mod:`mmssl.objectives.base`): each term of a pair
(i, j) is computed over the samples that have both i and j (L: those that have i), with
its negatives drawn from those samples only, and is their mean: the same value as on a
batch of just those samples. A pair fewer than two samples share contributes nothing.
Each encoder runs only on the samples some term needs it for.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations, permutations

import torch
from torch import nn

from mmssl.types import SourceSpec
from mmssl.models.heads import build_latent_head, build_local_head
from mmssl.objectives.base import MIN_SAMPLES, Meta, Method, ModelSettings, Presence, positions, rows_with, take
from mmssl.objectives.criteria import CRITERIA, DEFAULT_CRITERION
from mmssl.objectives.infonce import CriticConfig, NCEResult

PARTS = ("L", "CL", "CS", "S")
CROSS_SOURCE = {"CL", "CS", "S"}
LOCAL_PARTS = {"L", "CL", "CS"}  # the parts that use the locations c (all but S)


@dataclass
class Projected:
    """One source's encoder pass. rows: (n,) batch indices it ran on (None = all B);
    z: (n, latent) raw latent; u_z: (n, D, 1); u_c: (n, D, M), None without local parts."""

    rows: torch.Tensor | None
    z: torch.Tensor
    u_z: torch.Tensor
    u_c: torch.Tensor | None


class ContrastiveMethod(Method):
    """Encoders with their projection heads and a set of contrastive parts, scored by one
    criterion (``self.criterion``, a :class:`mmssl.objectives.criteria.Criterion` built from
    its ``model.criteria`` settings; ``criterion`` names it in ``CRITERIA``)."""

    def __init__(self, sources: list[SourceSpec], settings: ModelSettings, parts: tuple[str, ...],
                 criterion: str = DEFAULT_CRITERION) -> None:
        super().__init__(sources, settings)
        if criterion not in CRITERIA:
            raise ValueError(f"unknown criterion {criterion!r}; criteria: {sorted(CRITERIA)}")
        kind = CRITERIA[criterion]
        unsupported = [p for p in parts if p not in kind.parts]
        if unsupported:
            raise ValueError(f"criterion {criterion!r} applies to part(s) {list(kind.parts)} only, "
                             f"not {unsupported}")
        self.criterion = kind.from_criteria_settings(settings.criteria)  # checks its settings
        # the store index columns the criterion needs with each batch (y-aware's variable)
        self.metadata_columns = self.criterion.metadata_columns
        if CROSS_SOURCE & set(parts) and len(sources) < 2:
            raise ValueError(f"parts {sorted(CROSS_SOURCE & set(parts))} need two or more sources")
        self.parts = parts
        self.critic = CriticConfig(clip=settings.clip, penalty=settings.penalty)
        # heads are shared by all losses of a source, not between sources (paper 3.3); a
        # method without a part on locations (S) builds no local heads: they would be
        # parameters no loss reaches
        self.uses_locations = bool(LOCAL_PARTS & set(parts))
        self.local_heads = nn.ModuleDict(
            {
                s.name: build_local_head(settings.heads, self.encoders[s.name].local_channels, settings.latent, s.dims)
                for s in sources
            }
            if self.uses_locations
            else {}
        )
        self.latent_heads = nn.ModuleDict({s.name: build_latent_head(settings.heads, settings.latent) for s in sources})

    def needed_rows(self, present: Presence) -> dict[str, torch.Tensor | None]:
        """source -> (n,) batch indices some term needs its encoder on (None = all B):
        for each part, the samples that have both sources of a pair (L: the source)."""
        if present is None:
            return {s: None for s in self.sources}
        need = {s: torch.zeros_like(present[s]) for s in self.sources}
        for part in self.parts:
            for a, b in self._pairs(part):
                both = present[a] & present[b]
                need[a] |= both
                need[b] |= both
        return {s: (None if bool(m.all()) else m.nonzero().squeeze(1)) for s, m in need.items()}

    def project(self, x: dict[str, torch.Tensor], present: Presence = None) -> dict[str, Projected]:
        """source -> its :class:`Projected` pass over the samples it is needed for; a source
        needed by fewer than two samples is left out."""
        out = {}
        for s, rows in self.needed_rows(present).items():
            xs = take(x[s], rows)
            if len(xs) < MIN_SAMPLES:
                continue
            z, c = self.encoders[s](xs)
            u_z = self.latent_heads[s](z).unsqueeze(2)
            u_c = self.local_heads[s](c).flatten(2) if self.uses_locations else None
            out[s] = Projected(rows, z, u_z, u_c)
        return out

    def latent_s(self, part: str) -> bool:
        """Whether ``part`` is S under a criterion that relates the latents z alone
        (``Criterion.latent_s``): symmetric, scoreless."""
        return part == "S" and self.criterion.latent_s

    def _pairs(self, part: str) -> list[tuple[str, str]]:
        if part == "L":
            return [(s, s) for s in self.sources]
        if self.latent_s(part):  # symmetric: one term per unordered pair, the mean of both orders
            return list(combinations(self.sources, 2))
        return list(permutations(self.sources, 2))

    def _aligned(self, proj: dict[str, Projected], present: Presence, a: str,
                 b: str) -> tuple[Projected, Projected] | None:
        """The passes of a and b restricted to the samples that have both, row for row;
        None when fewer than two samples do."""
        if a not in proj or b not in proj:
            return None
        rows = rows_with(present, (a, b))
        if rows is not None and len(rows) < MIN_SAMPLES:
            return None
        pa, pb = (positions(present, s, rows, proj[s].rows) for s in (a, b))
        return tuple(Projected(rows, take(p.z, i), take(p.u_z, i), take(p.u_c, i))  # type: ignore[return-value]
                     for p, i in ((proj[a], pa), (proj[b], pb)))

    def _term(self, part: str, a: Projected, b: Projected, meta: torch.Tensor | None = None) -> NCEResult:
        """One part between the aligned passes a and b; meta: (n,) the y-aware variable."""
        if self.latent_s(part):
            return self._latent_term(a.z, b.z, meta)
        pooled, same = self.criterion.pooled, self.criterion.same_location
        if part in ("L", "CL"):
            return pooled(a.u_z, b.u_c, self.critic)
        if part == "S":
            return pooled(a.u_z, b.u_z, self.critic)
        ca, cb = a.u_c, b.u_c
        if self.settings.cs_mode == "same_location":
            return same(ca, cb, self.critic)
        idx = torch.randint(ca.shape[2], (ca.shape[0],), device=ca.device)
        anchor = ca[torch.arange(ca.shape[0], device=ca.device), :, idx].unsqueeze(2)
        return pooled(anchor, cb, self.critic)

    def _latent_term(self, za: torch.Tensor, zb: torch.Tensor, meta: torch.Tensor | None) -> NCEResult:
        """The criterion's latent-only S term between two (n, latent) latents (meta: (n,)
        its variable, or None): no critic scores, so no score penalty, and no MI bound (NaN)."""
        loss = self.criterion.latent(za, zb, meta)
        zero = torch.zeros((), device=za.device)
        return NCEResult(loss=loss, penalty=zero, mi=torch.tensor(float("nan")))

    def losses(self, x: dict[str, torch.Tensor], y: torch.Tensor | None = None,
               present: Presence = None, meta: Meta = None) -> dict[str, torch.Tensor]:
        return self.contrastive_terms(self.project(x, present), present, meta)

    def contrastive_terms(self, proj: dict[str, Projected], present: Presence, meta: Meta = None) -> dict[str, torch.Tensor]:
        """Each part summed over its source pairs, weighted by alpha; ``penalty`` beside
        them when on. A part no pair of the batch can take part in is left out."""
        column = None
        if self.metadata_columns:
            if meta is None or self.metadata_columns[0] not in meta:
                raise ValueError(f"criterion {self.criterion.name} needs the metadata column {self.metadata_columns[0]!r} "
                                 "in losses(..., meta=...)")
            column = meta[self.metadata_columns[0]]
        terms: dict[str, torch.Tensor] = {}
        penalties = []
        for part in self.parts:
            alpha = float(self.settings.weights.get(part, 1.0))
            pairs = [self._aligned(proj, present, a, b) for a, b in self._pairs(part)]
            results = [self._term(part, *pair, take(column, pair[0].rows)) for pair in pairs if pair is not None]
            if not results:
                continue
            terms[part] = alpha * torch.stack([r.loss for r in results]).sum()
            if not self.latent_s(part):  # S of a latent criterion: no critic scores to penalise
                penalties.append(alpha * torch.stack([r.penalty for r in results]).sum())
        if self.critic.penalty > 0 and penalties:
            terms["penalty"] = sum(penalties[1:], penalties[0])
        return terms
