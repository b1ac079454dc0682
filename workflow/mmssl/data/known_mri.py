"""A brain-MRI benchmark with a known answer (dataset kind ``synthetic_mri``): T1w and fALFF
volumes generated directly on the MNI grid (no preprocessing chain), from a generative
model whose shared and modality-specific factors are written beside the data.

Per subject i, with independent standard normal factors:

* ``shared`` s_i: the disease factor, expressed in both modalities: atrophy of a medial
  temporal region in T1w (intensity x (1 - atrophy * sigmoid(s_i)) inside it) and lower
  fALFF in a linked posterior cingulate region (x (1 - falff_drop * sigmoid(s_i))).
* ``t1_specific`` u_i: a frontal intensity change seen only in T1w; ``falff_specific``
  v_i: a parietal fALFF change seen only in fALFF. Neither relates to the label.
* nuisance: head size (isotropic scale 1 + 0.04 N), scanner intensity (gain 1 + 0.1 N, per
  modality), and Gaussian noise of ``noise`` x the in-brain standard deviation.
* ``T2w`` (only when listed in ``sources``): the template's contrast inverted inside the
  brain (fluid bright), brighter in the same medial temporal region with the disease
  (x (1 + t2_gain * sigmoid(s_i))), and ``t2_specific`` w_i, an occipital change seen only
  in T2w. Its random draws come after all the others, so adding it changes nothing else.
* ``age`` (metadata, in the index only): 72 + 6 (0.5 s_i + 0.87 a_i) years, a_i standard
  normal: older subjects are more often AD, as in OASIS-3; no volume depends on it.
* label: AD when s_i + label_noise * e_i > 0 (e_i standard normal), else HC. The label
  depends on the shared factor alone, and the noise makes the groups overlap: even the
  true s_i separates them only with ROC AUC ~0.82 (label_noise 1), so no method should
  reach 1.

Each volume is z-normalised inside the template brain mask (as the OASIS-3 branch does after
histogram standardisation), and stored as float16: the ``sources`` listed (default ``T1w``
and ``fALFF``), (N, 1, S, S, S). The index carries the truth (shared, t1_specific,
falff_specific, [t2_specific,] head_scale).

Missing sources (``missing``: source -> probability): each subject lacks each listed
source independently with that probability, whatever its label or factors (missing
completely at random); a subject the draws would leave with nothing keeps its first
listed source. Absent volumes are zeros with ``has_{source}`` = 0 in the index (see
:mod:`mmssl.data.store`); the draws come last, so the volumes that remain are those of
the complete benchmark.

What a method should show: the probe's ROC AUC near the shared factor's own (and
``random`` clearly below it), and cross-modal similarity (CKA) that follows the shared
dimension, the only one the modalities have in common.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from mmssl.data.store import present_column, write_store
from mmssl.types import SourceSpec

# MNI mm centres and radii of the planted regions
ATROPHY_REGION = ((-26.0, -20.0, -16.0), 14.0)  # left medial temporal lobe
FALFF_REGION = ((0.0, -56.0, 28.0), 14.0)  # posterior cingulate / precuneus (linked, DMN)
T1_SPECIFIC_REGION = ((0.0, 50.0, 10.0), 16.0)  # frontal
FALFF_SPECIFIC_REGION = ((40.0, -50.0, 40.0), 14.0)  # right parietal
T2_SPECIFIC_REGION = ((0.0, -85.0, 5.0), 14.0)  # occipital
SOURCES = ("T1w", "fALFF", "T2w")


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


def _scaled(volume: np.ndarray, scale: float) -> np.ndarray:
    """``volume`` enlarged by ``scale`` about its centre (linear interpolation): head size."""
    centre = (np.asarray(volume.shape) - 1) / 2
    matrix = np.eye(3) / scale
    return ndimage.affine_transform(volume, matrix, offset=centre - matrix @ centre, order=1, mode="constant")


def observed(volume: np.ndarray, head: float, gain: float, noise: float, mask: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """What the scanner gives of a subject's ``volume``: its head size, the scanner's gain,
    voxel noise of ``noise`` x the in-brain sd, then z-normalised in ``mask``."""
    v = _scaled(volume, head) * gain
    v += noise * float(v[mask].std()) * rng.standard_normal(v.shape)
    return _znorm(v, mask)


def _znorm(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    inside = volume[mask]
    return np.where(mask, (volume - inside.mean()) / max(float(inside.std()), 1e-8), 0.0)


def generate(n_subjects: int, seed: int, size: int, atrophy: float, falff_drop: float, specific: float,
             label_noise: float, noise: float, sources: tuple[str, ...] = ("T1w", "fALFF"), t2_gain: float = 0.6,
             missing: dict[str, float] | None = None) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """(index, {source: (N, 1, S, S, S) float32}) for the listed ``sources``; see the module
    docstring for the model and for ``missing``. ``size`` 32 (6 mm) or 64 (3 mm) voxels
    per side."""
    unknown = sorted(set(sources) - set(SOURCES)) + sorted(set(missing or {}) - set(sources))
    if unknown or not sources:
        raise ValueError(f"synthetic_mri: sources must be a non-empty subset of {list(SOURCES)} and missing may name "
                         f"only them; got sources {list(sources)}, missing {dict(missing or {})}")
    # imported here: nilearn's template and SimpleITK load only when a benchmark is generated
    from mmssl.preprocess.registration import apply_affine
    from mmssl.preprocess.spatial import GridSettings, mni_grid, mni_template

    voxel = 192.0 / size  # 64 x 3 mm or 32 x 6 mm: the same field of view
    grid = mni_grid(GridSettings(size=size, voxel_mm=voxel))
    template = apply_affine(mni_template(1), np.eye(4), (grid.shape, grid.affine), order=1,
                            antialias_mm=voxel).get_fdata().astype(np.float32)
    template /= template.max()
    mask = template > 0.2
    # a smooth baseline fALFF map: higher in grey-matter-like intensities of the template
    base_falff = np.where(mask, 0.35 + 0.25 * np.exp(-((template - 0.55) / 0.2) ** 2), 0.0).astype(np.float32)
    regions = {name: region_mask(grid.affine, grid.shape, *spec) for name, spec in
               (("atrophy", ATROPHY_REGION), ("falff", FALFF_REGION), ("t1s", T1_SPECIFIC_REGION),
                ("falffs", FALFF_SPECIFIC_REGION), ("t2s", T2_SPECIFIC_REGION))}
    rng = np.random.default_rng(seed)
    shared, t1s, falffs, e = rng.standard_normal((4, n_subjects))
    head = 1.0 + 0.04 * rng.standard_normal(n_subjects)
    gain = 1.0 + 0.1 * rng.standard_normal((2, n_subjects))
    label = np.where(shared + label_noise * e > 0, "AD", "HC")
    t1 = np.empty((n_subjects, 1, size, size, size), np.float32)
    falff = np.empty_like(t1)
    for i in range(n_subjects):
        a = template * (1.0 - atrophy * _sigmoid(shared[i]) * regions["atrophy"]) * (1.0 + specific * t1s[i] * regions["t1s"])
        f = base_falff * (1.0 - falff_drop * _sigmoid(shared[i]) * regions["falff"]) * (1.0 + specific * falffs[i] * regions["falffs"])
        # the noise draws stay in their order: T1w's, then fALFF's
        t1[i, 0] = observed(a, head[i], gain[0, i], noise, mask, rng)
        falff[i, 0] = observed(f, head[i], gain[1, i], noise, mask, rng)
    ids = np.array([f"sub-{i:04d}" for i in range(n_subjects)])
    index = pd.DataFrame({"sample": ids, "subject": ids, "label": label, "shared": shared.round(5),
                          "t1_specific": t1s.round(5), "falff_specific": falffs.round(5), "head_scale": head.round(5)})
    arrays = {"T1w": t1, "fALFF": falff}
    if "T2w" in sources:
        arrays["T2w"] = t2w_volumes(rng, template, mask, regions, shared, head, t2_gain, specific, noise, index)
    arrays = {name: arrays[name] for name in sources}
    if missing:
        drop_sources(rng, index, arrays, list(sources), missing)
    # metadata only (no volume depends on it): an age that correlates 0.5 with the disease,
    # for criteria that use a continuous variable (y-aware); drawn from its own stream so
    # that every volume and draw above stays as it was
    age_rng = np.random.default_rng([seed, 1])
    index["age"] = (72.0 + 6.0 * (0.5 * shared + np.sqrt(0.75) * age_rng.standard_normal(n_subjects))).round(2)
    return index, arrays


def t2w_volumes(rng: np.random.Generator, template: np.ndarray, mask: np.ndarray, regions: dict[str, np.ndarray],
                shared: np.ndarray, head: np.ndarray, t2_gain: float, specific: float, noise: float,
                index: pd.DataFrame) -> np.ndarray:
    """(N, 1, S, S, S) T2w-like volumes (module docstring); adds ``t2_specific`` to ``index``."""
    n = len(shared)
    t2s = rng.standard_normal(n)
    t2_gain_scanner = 1.0 + 0.1 * rng.standard_normal(n)
    base = np.where(mask, 1.2 - template, 0.0).astype(np.float32)  # fluid bright, white matter dark
    out = np.empty((n, 1) + template.shape, np.float32)
    for i in range(n):
        v = base * (1.0 + t2_gain * _sigmoid(shared[i]) * regions["atrophy"]) * (1.0 + specific * t2s[i] * regions["t2s"])
        out[i, 0] = observed(v, head[i], t2_gain_scanner[i], noise, mask, rng)
    index["t2_specific"] = t2s.round(5)
    return out


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


def build_known_mri_store(out_dir: str | Path, *, n_subjects: int, seed: int, size: int, atrophy: float,
                          falff_drop: float, specific: float, label_noise: float, noise: float,
                          sources: list[str] | tuple[str, ...] = ("T1w", "fALFF"), t2_gain: float = 0.6,
                          missing: dict[str, float] | None = None) -> Path:
    """Generate the benchmark (see :func:`generate`) and write it as a float16 store."""
    index, arrays = generate(n_subjects, seed, size, atrophy, falff_drop, specific, label_noise, noise,
                             tuple(sources), t2_gain, missing)
    specs = [SourceSpec(name, 1, size, 3) for name in arrays]
    return write_store(out_dir, index, {k: v.astype(np.float16) for k, v in arrays.items()}, specs)
