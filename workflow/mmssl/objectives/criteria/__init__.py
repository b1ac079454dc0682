"""Criteria a taxonomy part can be trained with (issue 15; made to equal the official code
of each criterion in issue 21), one module per criterion, and their registry.

The part says *what* is related (L, CL, CS, S); the criterion says *how*
(:mod:`mmssl.objectives.criteria.base` for what a criterion declares). Settings live under
``model.criteria.<schema_section>`` in the config schema (the only home of their defaults).

- ``infonce`` (:mod:`.infonce`): the paper's, every part; plain method names (no '@').
- ``dcl`` (:mod:`.dcl`): decoupled contrastive learning, every part; S official or critic.
- ``barlow`` (:mod:`.barlow`): Barlow Twins, S.
- ``vicreg`` (:mod:`.vicreg`): VICReg, S.
- ``yaware`` (:mod:`.yaware`): y-aware InfoNCE on a continuous variable (age), S.

Barlow Twins, VICReg, y-aware and the official DCL relate one vector per sample to one
vector per sample, so they apply to S (z_i vs z_j). They are symmetric in the two
sources, so S counts each unordered source pair once: the mean of the two orders, the
official value (:mod:`mmssl.objectives.contrastive`).

Adding a criterion: one module here with a :class:`Criterion` subclass, one entry in
:data:`CRITERIA`, and its settings' section under ``model.criteria`` in the config schema
(when it has settings).

All loss functions take embeddings as ``(B, D)`` (a latent per sample) unless said otherwise.
"""

from __future__ import annotations

from mmssl.objectives.criteria.barlow import BarlowTwins
from mmssl.objectives.criteria.base import Criterion, LatentCriterion
from mmssl.objectives.criteria.dcl import DCL
from mmssl.objectives.criteria.infonce import InfoNCE
from mmssl.objectives.criteria.vicreg import VICReg
from mmssl.objectives.criteria.yaware import YAware

# name (the method name's '@' suffix) -> criterion class; the order is that of method listings
CRITERIA: dict[str, type[Criterion]] = {
    "infonce": InfoNCE,
    "dcl": DCL,
    "barlow": BarlowTwins,
    "vicreg": VICReg,
    "yaware": YAware,
}
# the criterion of a method name without '@'
DEFAULT_CRITERION = "infonce"

__all__ = ["CRITERIA", "DEFAULT_CRITERION", "Criterion", "LatentCriterion"]
