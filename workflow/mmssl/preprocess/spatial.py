"""The 3 mm, 64³ MNI grid every preprocessed volume lives on, and the template on it.

Template: nilearn's bundled MNI152 T1 (``mni_icbm152_t1_tal_nlin_sym_09a``, i.e. the
ICBM 2009a *symmetric* nonlinear average; nilearn's docstring says "asymmetrical" but
the bundled file name says ``sym_09a``). Its TemplateFlow / BIDS space label is
``MNI152NLin2009aSym`` (:data:`SPACE`) — not FSL's ``MNI152NLin6Asym``.

"Resample to 3 mm, then CropOrPad to 64³ centred on the brain" is done in one step: the
target grid *is* the 3 mm grid cropped/padded to 64³ around the centre of the template
brain mask's bounding box (TorchIO CropOrPad's notion of "centred on the mask"), and
every volume is interpolated straight onto it from native space (one interpolation, not
two). 64 × 3 mm = 192 mm covers the template brain (144 × 180 × 154 mm) with margin.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from mmssl.preprocess.registration import apply_affine
from mmssl.settings import schema_settings

SPACE = "MNI152NLin2009aSym"


@schema_settings("grid", "preprocess.grid")
class GridSettings:
    """Target grid (config key ``preprocess.grid``; defaults: the config schema): voxel_mm,
    size (voxels per axis)."""

    voxel_mm: float
    size: int


@dataclass(frozen=True)
class Grid:
    """A voxel grid: shape (X, Y, Z) and its (4, 4) RAS affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def empty(self) -> nib.Nifti1Image:
        return nib.Nifti1Image(np.zeros(self.shape, np.float32), self.affine)


@functools.lru_cache(maxsize=4)
def mni_template(resolution: int = 1) -> nib.Nifti1Image:
    """nilearn's MNI152 T1 template (skull-stripped, values 0..1) at ``resolution`` mm."""
    from nilearn import datasets  # slow import, only needed here

    return datasets.load_mni152_template(resolution=resolution)


# the template threshold that places the grid (its centre: the 1 mm mask's bounding box),
# fixed so that preprocess.brain_mask.template_threshold changes a mask, never the grid
GRID_THRESHOLD = 0.2


@functools.lru_cache(maxsize=4)
def mni_brain_mask(resolution: int, threshold: float) -> nib.Nifti1Image:
    """nilearn's MNI152 brain mask (template > threshold) as uint8 at ``resolution`` mm."""
    data = (mni_template(resolution).get_fdata() > threshold).astype(np.uint8)
    return nib.Nifti1Image(data, mni_template(resolution).affine)


@functools.lru_cache(maxsize=4)
def mni_grid(settings: GridSettings) -> Grid:
    """The target grid: ``size``³ voxels of ``voxel_mm``, axis-aligned RAS, centred on the
    bounding box of the 1 mm template brain mask."""
    mask = mni_brain_mask(1, GRID_THRESHOLD)
    idx = np.argwhere(np.asarray(mask.dataobj) > 0)
    lo, hi = (mask.affine @ np.r_[idx.min(0), 1])[:3], (mask.affine @ np.r_[idx.max(0), 1])[:3]
    centre = (lo + hi) / 2
    affine = np.diag([settings.voxel_mm] * 3 + [1.0])
    affine[:3, 3] = centre - settings.voxel_mm * (settings.size - 1) / 2
    return Grid((settings.size,) * 3, affine)


@functools.lru_cache(maxsize=8)
def grid_brain_mask(settings: GridSettings, dilate_voxels: int, threshold: float) -> np.ndarray:
    """(size, size, size) bool: the template brain (template > ``threshold``) on the target
    grid, dilated by ``dilate_voxels`` (the authors' mask: 3 mm MNI152 mask, dilated; both
    from ``preprocess.brain_mask``). The 1 mm template is
    smoothed to 3 mm resolution before thresholding, like nilearn's own resampled masks."""
    grid = mni_grid(settings)
    template = apply_affine(mni_template(1), np.eye(4), (grid.shape, grid.affine), order=1, antialias_mm=settings.voxel_mm)
    mask = template.get_fdata() > threshold
    if dilate_voxels > 0:
        mask = ndimage.binary_dilation(mask, iterations=dilate_voxels)
    mask.setflags(write=False)  # cached and shared: nobody may edit it in place
    return mask


def to_grid(
    img: nib.Nifti1Image, fixed_to_moving: np.ndarray, grid: Grid, order: int = 1, antialias: bool = True
) -> nib.Nifti1Image:
    """Resample a native image onto ``grid`` through the template->native transform.

    Args:
        img: native 3D image.
        fixed_to_moving: (4, 4) RAS matrix, template world point -> native world point.
        grid: target grid (see :func:`mni_grid`).
        order: 1 for intensities, 0 for labels.
        antialias: smooth to the grid's voxel size first (ignored for order 0).
    Returns: float32 image of ``grid.shape`` with ``grid.affine``.
    """
    voxel = float(np.linalg.norm(grid.affine[:3, 0]))
    return apply_affine(img, fixed_to_moving, (grid.shape, grid.affine), order=order, antialias_mm=voxel if antialias else None)


def fov_coverage(native: nib.Nifti1Image, fixed_to_moving: np.ndarray, grid: Grid, brain: np.ndarray) -> float:
    """The share of the ``brain`` voxels of ``grid`` (bool, ``grid.shape``) that lie inside
    the native image's field of view (its voxel extent): 1 for a whole-brain acquisition,
    less for a slab.

    The template brain is moved by the rigid part of ``fixed_to_moving`` (its nearest
    rotation, about the brain's centre, which goes where the full transform sends it), not
    by the full affine: a 12-dof registration of a slab stretches the template into it (a
    z scale of 0.36 for a third of the brain on the synthetic data), which would make any
    slab look whole."""
    ijk = np.argwhere(brain)
    if not len(ijk):
        return float("nan")
    world = np.c_[ijk, np.ones(len(ijk))] @ grid.affine.T
    centre = world.mean(axis=0)
    u, _, vt = np.linalg.svd(fixed_to_moving[:3, :3])
    rigid = np.eye(4)
    rigid[:3, :3] = u @ vt
    rigid[:3, 3] = (fixed_to_moving @ centre)[:3] - rigid[:3, :3] @ centre[:3]
    points = world @ (np.linalg.inv(native.affine) @ rigid).T
    extent = np.asarray(native.shape[:3], dtype=float) - 0.5
    inside = np.all((points[:, :3] >= -0.5) & (points[:, :3] <= extent), axis=1)
    return float(inside.mean())


def to_grid_masked(
    img: nib.Nifti1Image, mask: nib.Nifti1Image, fixed_to_moving: np.ndarray, grid: Grid
) -> tuple[nib.Nifti1Image, np.ndarray]:
    """Resample an image that is only valid inside ``mask`` (same native grid) without
    diluting it with the zeros outside: normalised interpolation, i.e. resample
    ``img * mask`` and ``mask`` alike and divide. Returns the image on ``grid`` (0 outside)
    and the (X, Y, Z) bool mask where the resampled mask is > 0.5."""
    inside = np.asarray(mask.dataobj) > 0
    masked = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32) * inside, img.affine)
    weight = to_grid(nib.Nifti1Image(inside.astype(np.float32), mask.affine), fixed_to_moving, grid).get_fdata(dtype=np.float32)
    values = to_grid(masked, fixed_to_moving, grid).get_fdata(dtype=np.float32)
    valid = weight > 0.5
    out = np.zeros(grid.shape, np.float32)
    out[valid] = values[valid] / weight[valid]
    return nib.Nifti1Image(out, grid.affine), valid


def zero_outside(img: nib.Nifti1Image, mask: np.ndarray) -> nib.Nifti1Image:
    """Copy of ``img`` (X, Y, Z) with every voxel outside the boolean ``mask`` set to 0."""
    data = np.asarray(img.dataobj, dtype=np.float32) * np.asarray(mask, dtype=bool)
    return nib.Nifti1Image(data, img.affine)
