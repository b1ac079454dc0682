"""A brain-MRI benchmark with a known answer (dataset kind ``synthetic_mri``): T1w, fALFF
(and optionally T2w) volumes generated directly on the MNI grid (no preprocessing chain),
from a generative model whose factors are written beside the data.

The generating model (version 2). Per subject i, every factor is drawn independently of
every other, standard normal:

* ``shared`` s_i: the disease factor, the only factor expressed in more than one modality
  that a method should learn;
* ``private_<m>`` p_i^m, one per modality m (T1w, fALFF, T2w): expressed in m alone;
* nuisances: ``nuisance_head`` h_i, the subject's head size, **shared by all of its
  modalities** (one head is scanned for each: a shared nuisance, deliberately, as in real
  data); ``nuisance_bias_<m>`` b_i^m, one per modality: the amplitude of a smooth
  multiplicative intensity field (coil bias for T1w/T2w, a smooth drift of the fALFF map);
* e_i: label noise (not saved: it is the label's own noise).

With R_x the soft spherical masks of the planted regions (:data:`ATROPHY_REGION` etc.),
T the MNI152 template scaled to max 1, F0 the baseline fALFF map, sigma the logistic
function and ``atrophy``, ``falff_drop``, ``t2_gain``, ``specific`` the config keys::

    A_i^T1w   = T  * (1 - atrophy    * sigma(s_i) R_mtl) * (1 + specific p_i^T1w   R_frontal)
    A_i^fALFF = F0 * (1 - falff_drop * sigma(s_i) R_pcc) * (1 + specific p_i^fALFF R_parietal)
    A_i^T2w   = (1.2 - T) 1[brain] * (1 + t2_gain * sigma(s_i) R_mtl) * (1 + specific p_i^T2w R_occipital)

    V_i^m = Z( G(b_i^m) * H_{1 + HEAD_SD h_i}[A_i^m] + noise * sd_brain(...) * eps_i^m )

where H_c enlarges a volume by the factor c about the grid's centre (linear interpolation),
G(b) = exp(BIAS * b * z_mm / 96) is a bias field along the inferior-superior MNI axis
(z_mm the voxel's MNI z; about +-11 % at the top and bottom of the brain for b = 1),
eps_i^m white Gaussian noise, and Z the z-normalisation inside the template's brain mask
(as the OASIS-3 branch does after histogram standardisation). Z removes any global gain
exactly, so there is none; the bias field survives it (it changes the contrast between
regions, not only the scale). HEAD_SD is 0.02, BIAS 0.15.

* label: AD when s_i + label_noise * e_i > 0, else HC. The label depends on the shared
  factor alone, and the noise makes the groups overlap: even the true s_i separates them
  only with ROC AUC ~0.82 (label_noise 1), so no method should reach 1.
* ``age`` (metadata, in the index only): 72 + 6 (0.5 s_i + 0.87 a_i) years, a_i standard
  normal: older subjects are more often AD, as in OASIS-3; no volume depends on it.

Every factor of every modality is drawn, in a fixed order, whichever ``sources`` are
listed; each modality's voxel noise comes from its own stream ([seed, 2, k], k its place in
:data:`SOURCES`), the missing-source draws from [seed, 3], age from [seed, 1]: adding T2w
changes nothing else, and everything is a function of the seed.

Stored as float16: the ``sources`` listed (default ``T1w`` and ``fALFF``), (N, 1, S, S, S).
The store's index carries the generating factors of the listed modalities
(:func:`factor_columns`: ``shared``, ``private_<m>``, ``nuisance_head``,
``nuisance_bias_<m>``), which ``mmssl recovery`` reads.

Missing sources (``missing``: source -> probability): each subject lacks each listed
source independently with that probability, whatever its label or factors (missing
completely at random); a subject the draws would leave with nothing keeps its first
listed source. Absent volumes are zeros with ``has_{source}`` = 0 in the index (see
:mod:`mmssl.data.store`).

What a method should show: the probe's ROC AUC near the shared factor's own (and
``random`` clearly below it); in the latents of each modality (``mmssl recovery``) a high
linear R² on ``shared``, and, for an objective that aligns the modalities, a low one on
the other modality's private factor (which the modality does not contain anyway) and on
its own private factor, since only s (and the head size) is common to both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from mmssl.data.store import write_store
from mmssl.modalities import present_column
from mmssl.types import SourceSpec

# MNI mm centres and radii of the planted regions
ATROPHY_REGION = ((-26.0, -20.0, -16.0), 14.0)  # left medial temporal lobe
FALFF_REGION = ((0.0, -56.0, 28.0), 14.0)  # posterior cingulate / precuneus (linked, DMN)
T1_SPECIFIC_REGION = ((0.0, 50.0, 10.0), 16.0)  # frontal
FALFF_SPECIFIC_REGION = ((40.0, -50.0, 40.0), 14.0)  # right parietal
T2_SPECIFIC_REGION = ((0.0, -85.0, 5.0), 14.0)  # occipital
SOURCES = ("T1w", "fALFF", "T2w")
FIELD_OF_VIEW_MM = 192.0  # the grid's side: 64 x 3 mm or 32 x 6 mm (the maps' grid reads it too)


def region_mask(affine: np.ndarray, shape: tuple[int, int, int], centre: tuple[float, float, float],
                radius: float) -> np.ndarray:
    """(S, S, S) float in [0, 1]: a sphere of ``radius`` mm around ``centre`` (MNI mm), with
    a soft edge of one voxel so that resampling does not alias it."""
    ijk = np.stack(np.indices(shape), -1).reshape(-1, 3)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    dist = np.linalg.norm(xyz - np.asarray(centre), axis=1).reshape(shape)
    voxel = float(np.abs(affine[0, 0]))
    return np.clip((radius - dist) / voxel + 0.5, 0.0, 1.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


HEAD_SD = 0.02  # head size: scale 1 + HEAD_SD h, h standard normal, shared by a subject's modalities
BIAS = 0.15  # bias field: exp(BIAS b z_mm / 96), b standard normal, one per modality
SHARED, PRIVATE, NUISANCE = "shared", "private_", "nuisance_"


def factor_columns(columns) -> list[str]:
    """The generating factors among an index's ``columns``, in order: ``shared``, then
    ``private_<m>`` and ``nuisance_<...>`` columns (the module docstring's model)."""
    return [c for c in columns if c == SHARED or str(c).startswith((PRIVATE, NUISANCE))]


def _scaled(volume: np.ndarray, scale: float) -> np.ndarray:
    """``volume`` enlarged by ``scale`` about its centre (linear interpolation): head size."""
    centre = (np.asarray(volume.shape) - 1) / 2
    matrix = np.eye(3) / scale
    return ndimage.affine_transform(volume, matrix, offset=centre - matrix @ centre, order=1, mode="constant")


def bias_field(affine: np.ndarray, shape: tuple[int, int, int], amplitude: float) -> np.ndarray:
    """(S, S, S) exp(BIAS * amplitude * z_mm / 96): a smooth multiplicative field along the
    inferior-superior axis, which z-normalisation does not remove."""
    z = (np.arange(shape[2]) * affine[2, 2] + affine[2, 3]).astype(np.float32)
    return np.broadcast_to(np.exp(BIAS * amplitude * z / 96.0), shape).astype(np.float32)


def observed(volume: np.ndarray, head: float, field: np.ndarray, noise: float, mask: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """What the scanner gives of a subject's ``volume``: its head size, the bias ``field``,
    voxel noise of ``noise`` x the in-brain sd, then z-normalised in ``mask``."""
    v = _scaled(volume, head) * field
    v += noise * float(v[mask].std()) * rng.standard_normal(v.shape)
    return _znorm(v, mask)


def _znorm(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    inside = volume[mask]
    return np.where(mask, (volume - inside.mean()) / max(float(inside.std()), 1e-8), 0.0)


def draw_factors(n_subjects: int, seed: int) -> dict[str, np.ndarray]:
    """Every factor of the model (module docstring), each (n_subjects,) independent standard
    normal, for all of :data:`SOURCES` whichever are generated: shared, label_noise,
    private_<m>, nuisance_head, nuisance_bias_<m>."""
    rng = np.random.default_rng(seed)
    names = [SHARED, "label_noise", *(PRIVATE + m for m in SOURCES), NUISANCE + "head",
             *(NUISANCE + "bias_" + m for m in SOURCES)]
    return dict(zip(names, rng.standard_normal((len(names), n_subjects))))


def generate(n_subjects: int, seed: int, size: int, atrophy: float, falff_drop: float, specific: float,
             label_noise: float, noise: float, sources: tuple[str, ...], t2_gain: float,
             missing: dict[str, float] | None) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """(index, {source: (N, 1, S, S, S) float32}) for the listed ``sources``; see the module
    docstring for the model and for ``missing`` (None or {}: every subject has every
    source). ``size`` 32 (6 mm) or 64 (3 mm) voxels per side. Every argument is a config
    key of a synthetic_mri dataset, whose defaults are the config schema's."""
    unknown = sorted(set(sources) - set(SOURCES)) + sorted(set(missing or {}) - set(sources))
    if unknown or not sources:
        raise ValueError(f"synthetic_mri: sources must be a non-empty subset of {list(SOURCES)} and missing may name "
                         f"only them; got sources {list(sources)}, missing {dict(missing or {})}")
    # imported here: nilearn's template and SimpleITK load only when a benchmark is generated
    from mmssl.preprocess.registration import apply_affine
    from mmssl.preprocess.spatial import GridSettings, mni_grid, mni_template

    voxel = FIELD_OF_VIEW_MM / size  # 64 x 3 mm or 32 x 6 mm: the same field of view
    grid = mni_grid(GridSettings(size=size, voxel_mm=voxel))
    template = apply_affine(mni_template(1), np.eye(4), (grid.shape, grid.affine), order=1,
                            antialias_mm=voxel).get_fdata().astype(np.float32)
    template /= template.max()
    mask = template > 0.2
    # a smooth baseline fALFF map: higher in grey-matter-like intensities of the template
    base_falff = np.where(mask, 0.35 + 0.25 * np.exp(-((template - 0.55) / 0.2) ** 2), 0.0).astype(np.float32)
    base_t2 = np.where(mask, 1.2 - template, 0.0).astype(np.float32)  # fluid bright, white matter dark
    regions = {name: region_mask(grid.affine, grid.shape, *spec) for name, spec in
               (("atrophy", ATROPHY_REGION), ("falff", FALFF_REGION), ("T1w", T1_SPECIFIC_REGION),
                ("fALFF", FALFF_SPECIFIC_REGION), ("T2w", T2_SPECIFIC_REGION))}
    f = draw_factors(n_subjects, seed)
    shared, head = f[SHARED], 1.0 + HEAD_SD * f[NUISANCE + "head"]
    label = np.where(shared + label_noise * f["label_noise"] > 0, "AD", "HC")
    # per modality: (base volume, planted disease region, its change at sigma(s) = 1)
    disease = {"T1w": (template, regions["atrophy"], -atrophy), "fALFF": (base_falff, regions["falff"], -falff_drop),
               "T2w": (base_t2, regions["atrophy"], t2_gain)}
    arrays = {}
    for m in sources:
        rng = np.random.default_rng([seed, 2, SOURCES.index(m)])
        base, region, change = disease[m]
        out = np.empty((n_subjects, 1, size, size, size), np.float32)
        for i in range(n_subjects):
            volume = base * (1.0 + change * _sigmoid(shared[i]) * region) * (1.0 + specific * f[PRIVATE + m][i] * regions[m])
            field = bias_field(grid.affine, grid.shape, f[NUISANCE + "bias_" + m][i])
            out[i, 0] = observed(volume, head[i], field, noise, mask, rng)
        arrays[m] = out
    ids = np.array([f"sub-{i:04d}" for i in range(n_subjects)])
    factors = [SHARED, *(PRIVATE + m for m in sources), NUISANCE + "head", *(NUISANCE + "bias_" + m for m in sources)]
    index = pd.DataFrame({"sample": ids, "subject": ids, "label": label, **{k: f[k].round(5) for k in factors}})
    if missing:
        drop_sources(np.random.default_rng([seed, 3]), index, arrays, list(sources), missing)
    # metadata only (no volume depends on it): an age that correlates 0.5 with the disease,
    # for criteria that use a continuous variable (y-aware); drawn from its own stream
    age_rng = np.random.default_rng([seed, 1])
    index["age"] = (72.0 + 6.0 * (0.5 * shared + np.sqrt(0.75) * age_rng.standard_normal(n_subjects))).round(2)
    return index, arrays


def drop_sources(rng: np.random.Generator, index: pd.DataFrame, arrays: dict[str, np.ndarray], sources: list[str],
                 missing: dict[str, float]) -> None:
    """Remove each source from each subject with probability ``missing[source]`` (in place:
    zeros in ``arrays``, ``has_{source}`` columns in ``index``); a subject left with none
    keeps ``sources[0]``."""
    draws = {s: rng.random(len(index)) < float(missing.get(s, 0.0)) for s in sources}
    nothing = np.logical_and.reduce([draws[s] for s in sources])
    draws[sources[0]] &= ~nothing
    for s in sources:
        arrays[s][draws[s]] = 0.0
        index[present_column(s)] = (~draws[s]).astype(int)


def generator_keys() -> list[str]:
    """The config keys of a synthetic_mri dataset that the generator reads: the keyword
    arguments of :func:`build_known_mri_store` (the schema's synthetic_mri branch holds their
    defaults; tests/test_known_mri.py checks the two agree)."""
    import inspect

    params = inspect.signature(build_known_mri_store).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def build_known_mri_store(out_dir: str | Path, *, n_subjects: int, seed: int, size: int, atrophy: float,
                          falff_drop: float, specific: float, label_noise: float, noise: float,
                          sources: list[str] | tuple[str, ...], t2_gain: float,
                          missing: dict[str, float] | None) -> Path:
    """Generate the benchmark (see :func:`generate`) and write it as a float16 store."""
    index, arrays = generate(n_subjects, seed, size, atrophy, falff_drop, specific, label_noise, noise,
                             tuple(sources), t2_gain, missing)
    specs = [SourceSpec(name, 1, size, 3) for name in arrays]
    return write_store(out_dir, index, {k: v.astype(np.float16) for k, v in arrays.items()}, specs)
