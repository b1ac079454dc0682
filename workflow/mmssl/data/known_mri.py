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
* label: AD when s_i + label_noise * e_i > 0 (e_i standard normal), else HC. The label
  depends on the shared factor alone, and the noise makes the groups overlap: even the
  true s_i separates them only with ROC AUC ~0.82 (label_noise 1), so no method should
  reach 1.

Each volume is z-normalised inside the template brain mask (as the OASIS-3 branch does after
histogram standardisation), and stored as float16: sources ``T1w`` and ``fALFF``, (N, 1,
S, S, S). The index carries the truth (shared, t1_specific, falff_specific, head_scale).

What a method should show: the probe's ROC AUC near the shared factor's own (and
``random`` clearly below it), and cross-modal similarity (CKA) that follows the shared
dimension, the only one the modalities have in common.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from mmssl.data.store import write_store
from mmssl.types import SourceSpec

# MNI mm centres and radii of the planted regions
ATROPHY_REGION = ((-26.0, -20.0, -16.0), 14.0)  # left medial temporal lobe
FALFF_REGION = ((0.0, -56.0, 28.0), 14.0)  # posterior cingulate / precuneus (linked, DMN)
T1_SPECIFIC_REGION = ((0.0, 50.0, 10.0), 16.0)  # frontal
FALFF_SPECIFIC_REGION = ((40.0, -50.0, 40.0), 14.0)  # right parietal


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


def _znorm(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    inside = volume[mask]
    return np.where(mask, (volume - inside.mean()) / max(float(inside.std()), 1e-8), 0.0)


def generate(n_subjects: int, seed: int, size: int, atrophy: float, falff_drop: float, specific: float,
             label_noise: float, noise: float) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """(index, {"T1w": (N, 1, S, S, S), "fALFF": same}) float32 arrays; see the module
    docstring for the model. ``size`` 32 (6 mm) or 64 (3 mm) voxels per side."""
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
                ("falffs", FALFF_SPECIFIC_REGION))}
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
        a, f = _scaled(a, head[i]) * gain[0, i], _scaled(f, head[i]) * gain[1, i]
        a += noise * float(a[mask].std()) * rng.standard_normal(a.shape)
        f += noise * float(f[mask].std()) * rng.standard_normal(f.shape)
        t1[i, 0], falff[i, 0] = _znorm(a, mask), _znorm(f, mask)
    ids = np.array([f"sub-{i:04d}" for i in range(n_subjects)])
    index = pd.DataFrame({"sample": ids, "subject": ids, "label": label, "shared": shared.round(5),
                          "t1_specific": t1s.round(5), "falff_specific": falffs.round(5), "head_scale": head.round(5)})
    return index, {"T1w": t1, "fALFF": falff}


def build_known_mri_store(out_dir: str | Path, *, n_subjects: int, seed: int, size: int, atrophy: float,
                          falff_drop: float, specific: float, label_noise: float, noise: float) -> Path:
    """Generate the benchmark (see :func:`generate`) and write it as a float16 store."""
    index, arrays = generate(n_subjects, seed, size, atrophy, falff_drop, specific, label_noise, noise)
    sources = [SourceSpec("T1w", 1, size, 3), SourceSpec("fALFF", 1, size, 3)]
    return write_store(out_dir, index, {k: v.astype(np.float16) for k, v in arrays.items()}, sources)
