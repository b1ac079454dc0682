"""12-dof affine registration (SimpleITK, or FSL FLIRT) and the bookkeeping around it.

Conventions, used everywhere in :mod:`mmssl.preprocess`:

* World coordinates are **RAS millimetres** (nibabel / NIfTI convention). SimpleITK works
  in LPS; the two differ by a sign flip of x and y, ``F = diag(-1, -1, 1, 1)``, so a
  point transform ``M`` in RAS is ``F @ M @ F`` in LPS (``F`` is its own inverse). All
  LPS handling is confined to this module.
* A transform is stored as the 4×4 matrix that maps a **fixed (template) world point to
  the moving (native) world point** — the "pull" mapping that resampling needs, and
  what ITK's and fMRIPrep's ``..._from-T1w_to-MNI..._mode-image_xfm`` files hold. The
  inverse (native point -> template point) is :attr:`AffineResult.moving_to_fixed`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from mmssl.errors import BadInputError
from mmssl.preprocess.fsl import require_fsl

_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS, self-inverse


@dataclass(frozen=True)
class RegistrationSettings:
    """SimpleITK registration settings (config key ``preprocess.registration``, and
    ``preprocess.registration_epi`` for the mean EPI; defaults: the config schema).

    bins: Mattes mutual-information histogram bins. sampling: fraction of fixed-image
    voxels drawn at random per iteration. shrink_factors / smoothing_sigmas: the
    multi-resolution pyramid (sigmas in voxels of each level). iterations: per level and
    stage. max_step_mm / min_step_mm: first and smallest optimiser step, as the largest
    voxel displacement one step may cause (the step halves whenever the metric gets
    worse; a level ends below min_step_mm). rigid_first: run a 6-dof stage before the 12-dof one, which keeps the affine
    from shearing towards a bad local optimum when the start is far off. seed: of the
    random sampling, so runs are reproducible (0 = SimpleITK's wall clock: not reproducible). use_fixed_mask: restrict the metric to
    the (dilated) template brain, since the template is skull-stripped and the native
    head is not. moving_voxel_mm: a moving image with finer voxels is first smoothed and
    resampled to this size (0: never) — ITK computes the moving image's gradient over
    every voxel at every level, which on a 1 mm head is 6x the whole registration cost,
    while the estimate at 2 mm is as accurate (both ~0.1 mm on the synthetic heads).
    """

    bins: int
    sampling: float
    shrink_factors: tuple[int, ...]
    smoothing_sigmas: tuple[float, ...]
    iterations: int
    max_step_mm: float
    min_step_mm: float
    rigid_first: bool
    seed: int
    use_fixed_mask: bool
    moving_voxel_mm: float

    @classmethod
    def from_config(
        cls, cfg: Mapping[str, Any] | None, schema: str = "registration", section: str = "preprocess.registration"
    ) -> RegistrationSettings:
        """From a config mapping: the keys it leaves out take the defaults of the schema's
        ``$defs[schema]`` ("registration", or "registration_epi" for the mean EPI's); an
        unknown key or a wrong value raises ValueError naming ``section`` and the allowed keys."""
        from mmssl.schema import section_values

        values = section_values(schema, cfg, section)
        values["shrink_factors"] = tuple(values["shrink_factors"])
        values["smoothing_sigmas"] = tuple(values["smoothing_sigmas"])
        settings = cls(**values)
        if len(settings.shrink_factors) != len(settings.smoothing_sigmas):
            raise ValueError(
                f"{section}: shrink_factors and smoothing_sigmas must have the same length, got "
                f"{settings.shrink_factors} and {settings.smoothing_sigmas}"
            )
        return settings


@dataclass(frozen=True)
class AffineResult:
    """An estimated affine.

    fixed_to_moving: (4, 4) RAS-mm matrix mapping a fixed (template) world point to the
        moving (native) world point; use it to resample the moving image onto a fixed grid.
    similarity: normalised mutual information (Studholme, (H(A)+H(B))/H(A,B), in [1, 2];
        1 = independent) of the fixed image and the resampled moving image inside the
        fixed mask — comparable across subjects and modalities, used by QC.
    metric: the optimiser's final Mattes MI value (negative; lower is better), or NaN
        for FLIRT.
    """

    fixed_to_moving: np.ndarray
    similarity: float
    metric: float = float("nan")

    @property
    def moving_to_fixed(self) -> np.ndarray:
        """(4, 4) RAS-mm matrix mapping a native world point to the template world point."""
        return np.linalg.inv(self.fixed_to_moving)


# ---------------------------------------------------------------------------------------
# RAS <-> LPS conversions
# ---------------------------------------------------------------------------------------


def ras_to_lps(matrix: np.ndarray) -> np.ndarray:
    """A (4, 4) point transform in RAS world coordinates -> the same transform in LPS."""
    return _FLIP @ np.asarray(matrix, dtype=float) @ _FLIP


lps_to_ras = ras_to_lps  # the flip is its own inverse


def sitk_transform_to_matrix(transform: sitk.Transform) -> np.ndarray:
    """A SimpleITK matrix-offset transform (Affine, Euler3D, Similarity3D, ...) -> (4, 4)
    LPS matrix. ITK writes them as ``T(x) = A (x - c) + c + t``; the 4×4 form folds the
    centre ``c`` into the offset ``t + c - A c``."""
    tx = _as_affine(transform)
    a = np.asarray(tx.GetMatrix(), dtype=float).reshape(3, 3)
    c = np.asarray(tx.GetCenter(), dtype=float)
    t = np.asarray(tx.GetTranslation(), dtype=float)
    out = np.eye(4)
    out[:3, :3] = a
    out[:3, 3] = t + c - a @ c
    return out


def _as_affine(transform: sitk.Transform) -> sitk.AffineTransform:
    """Any 3D matrix-offset transform (Euler3D, Similarity3D, a generic Transform read
    from file...) as an AffineTransform with the same matrix, centre and translation."""
    tx = transform.Downcast() if type(transform) is sitk.Transform else transform
    if not all(hasattr(tx, m) for m in ("GetMatrix", "GetCenter", "GetTranslation")):
        raise TypeError(f"{tx.GetName()} is not a matrix-offset transform; cannot express it as a 4x4 affine")
    affine = sitk.AffineTransform(3)
    affine.SetCenter(tx.GetCenter())
    affine.SetMatrix(tx.GetMatrix())
    affine.SetTranslation(tx.GetTranslation())
    return affine


def matrix_to_sitk_transform(matrix_lps: np.ndarray) -> sitk.AffineTransform:
    """(4, 4) LPS matrix -> SimpleITK AffineTransform (centre at the origin)."""
    m = np.asarray(matrix_lps, dtype=float)
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(m[:3, :3].ravel().tolist())
    tx.SetTranslation(m[:3, 3].tolist())
    return tx


def nib_to_sitk(img: nib.Nifti1Image, dtype: type = np.float32) -> sitk.Image:
    """nibabel (RAS affine, array indexed [i, j, k]) -> SimpleITK image (LPS geometry).

    SimpleITK's numpy bridge indexes arrays [k, j, i], hence the transpose. The affine
    may contain any rotation; only shear is rejected (ITK images cannot hold it)."""
    data = np.asarray(img.dataobj, dtype=dtype)
    if data.ndim != 3:
        raise ValueError(f"expected a 3D image, got shape {data.shape}")
    lps = _FLIP @ img.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise ValueError("image affine has shear; SimpleITK images need an orthogonal direction matrix")
    out = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    out.SetSpacing(spacing.tolist())
    out.SetDirection(direction.ravel().tolist())
    out.SetOrigin(lps[:3, 3].tolist())
    return out


def sitk_to_nib(img: sitk.Image) -> nib.Nifti1Image:
    """SimpleITK image -> nibabel image with the equivalent RAS affine."""
    data = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    lps = np.eye(4)
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    lps[:3, :3] = direction * np.asarray(img.GetSpacing(), dtype=float)
    lps[:3, 3] = img.GetOrigin()
    return nib.Nifti1Image(data, _FLIP @ lps)


# ---------------------------------------------------------------------------------------
# Saving and applying transforms
# ---------------------------------------------------------------------------------------

_TXT_HEADER = (
    "mmssl affine: 4x4 RAS-mm matrix mapping a FIXED (template) world point to the MOVING "
    "(native) world point, i.e. the resampling ('mode-image') direction"
)


def save_transform(matrix_fixed_to_moving: np.ndarray, path: str | Path) -> Path:
    """Save a fixed->moving RAS matrix. ``.txt``: 4×4 text with a header comment;
    ``.tfm``: an ITK transform file (LPS), readable by ANTs / SimpleITK."""
    path = Path(path)
    m = np.asarray(matrix_fixed_to_moving, dtype=float)
    if m.shape != (4, 4):
        raise ValueError(f"transform for {path} must be 4x4, got {m.shape}")
    if path.suffix == ".tfm":
        sitk.WriteTransform(matrix_to_sitk_transform(ras_to_lps(m)), str(path))
    else:
        np.savetxt(path, m, fmt="%.10f", header=_TXT_HEADER)
    return path


def load_transform(path: str | Path) -> np.ndarray:
    """Inverse of :func:`save_transform`: (4, 4) fixed->moving RAS matrix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"transform file {path} not found")
    if path.suffix == ".tfm":
        return lps_to_ras(sitk_transform_to_matrix(sitk.ReadTransform(str(path))))
    m = np.loadtxt(path)
    if m.shape != (4, 4) or not np.allclose(m[3], [0, 0, 0, 1]):
        raise ValueError(f"{path}: expected a 4x4 affine with last row 0 0 0 1, got shape {m.shape}")
    return m


def apply_affine(
    img: nib.Nifti1Image,
    fixed_to_moving: np.ndarray,
    reference: nib.Nifti1Image | tuple[tuple[int, int, int], np.ndarray],
    order: int = 1,
    antialias_mm: float | None = None,
) -> nib.Nifti1Image:
    """Resample ``img`` (moving, native grid) onto ``reference``'s grid.

    Args:
        img: 3D moving image.
        fixed_to_moving: (4, 4) RAS matrix, reference world point -> ``img`` world point.
        reference: an image, or ``(shape, affine)`` of the target grid.
        order: spline order (0 nearest, for labels; 1 linear, for intensities).
        antialias_mm: if set, the target voxel size; ``img`` is first Gaussian-smoothed
            so that its resolution matches it (FWHM rule), which avoids aliasing when
            going from 1 mm to 3 mm.

    Returns:
        float32 image of the reference shape and affine; outside ``img``'s field of view 0.

    scipy rather than SimpleITK does the resampling: the voxel-to-voxel map below is
    plain RAS algebra, which leaves a single place (registration) that handles LPS.
    """
    shape, ref_affine = (reference.shape[:3], reference.affine) if hasattr(reference, "affine") else reference
    data = np.asarray(img.dataobj, dtype=np.float32)
    if antialias_mm and order > 0:
        data = _antialias(data, img.affine, antialias_mm)
    # reference voxel -> reference world -> moving world -> moving voxel
    vox_map = np.linalg.inv(img.affine) @ np.asarray(fixed_to_moving, dtype=float) @ ref_affine
    out = ndimage.affine_transform(
        data, vox_map[:3, :3], offset=vox_map[:3, 3], output_shape=tuple(shape), order=order, mode="constant", cval=0.0
    )
    return nib.Nifti1Image(out.astype(np.float32), ref_affine)


def _antialias(data: np.ndarray, affine: np.ndarray, target_mm: float) -> np.ndarray:
    """Gaussian pre-smoothing so a voxel of size s looks like one of size target_mm:
    FWHM = sqrt(target² - s²), sigma = FWHM / 2.3548 (per axis, in voxels)."""
    voxel = np.linalg.norm(affine[:3, :3], axis=0)
    fwhm_mm = np.sqrt(np.clip(target_mm**2 - voxel**2, 0.0, None))
    sigma_vox = fwhm_mm / 2.3548 / voxel
    if not np.any(sigma_vox > 0.1):
        return data
    return ndimage.gaussian_filter(data, sigma_vox)


# ---------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------


def register_affine(
    moving: nib.Nifti1Image,
    fixed: nib.Nifti1Image,
    settings: RegistrationSettings | None = None,
    fixed_mask: nib.Nifti1Image | None = None,
) -> AffineResult:
    """Estimate the 12-dof affine aligning ``moving`` (native) to ``fixed`` (template).

    Mattes MI, multi-resolution, started from a centre-of-mass (moments) alignment, then
    an optional rigid stage, then the full affine. ``fixed_mask`` (same grid as
    ``fixed``, nonzero = inside) restricts the metric when ``settings.use_fixed_mask``.
    ``settings`` None: the schema's ``preprocess.registration`` defaults.

    Returns an :class:`AffineResult` (fixed->moving RAS matrix, NMI similarity, metric).
    """
    settings = settings or RegistrationSettings.from_config({})
    fixed_s, moving_s = nib_to_sitk(fixed), nib_to_sitk(_coarsen(moving, settings.moving_voxel_mm))
    mask_s = None
    if fixed_mask is not None and settings.use_fixed_mask:
        mask_s = sitk.Cast(nib_to_sitk(fixed_mask) > 0.5, sitk.sitkUInt8)
        mask_s.CopyInformation(fixed_s)

    rigid = sitk.CenteredTransformInitializer(
        fixed_s, moving_s, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    if settings.rigid_first:
        rigid, _ = _optimise(fixed_s, moving_s, mask_s, sitk.Euler3DTransform(rigid), settings)
    affine, metric = _optimise(fixed_s, moving_s, mask_s, _as_affine(rigid), settings)

    fixed_to_moving = lps_to_ras(sitk_transform_to_matrix(affine))
    similarity = _nmi_after(fixed, moving, fixed_to_moving, fixed_mask)
    return AffineResult(fixed_to_moving=fixed_to_moving, similarity=similarity, metric=metric)


def _coarsen(img: nib.Nifti1Image, voxel_mm: float) -> nib.Nifti1Image:
    """``img`` on a grid of the same orientation and extent with voxels of ``voxel_mm``
    (anti-aliased); unchanged if its voxels are not finer than that (or voxel_mm is 0)."""
    spacing = np.linalg.norm(img.affine[:3, :3], axis=0)
    if voxel_mm <= 0 or spacing.min() >= 0.9 * voxel_mm:
        return img
    factor = np.maximum(voxel_mm / spacing, 1.0)
    shape = tuple(int(np.ceil(n / f)) for n, f in zip(img.shape[:3], factor))
    affine = img.affine.copy()
    affine[:3, :3] = img.affine[:3, :3] * factor  # scales each voxel axis (column)
    # keep the first voxel's outer corner where it was: centre moves by half the growth
    affine[:3, 3] = img.affine[:3, 3] + img.affine[:3, :3] @ ((factor - 1) / 2)
    return apply_affine(img, np.eye(4), (shape, affine), order=1, antialias_mm=voxel_mm)


def _optimise(
    fixed: sitk.Image,
    moving: sitk.Image,
    mask: sitk.Image | None,
    initial: sitk.Transform,
    settings: RegistrationSettings,
) -> tuple[sitk.Transform, float]:
    """One multi-resolution stage; returns the optimised transform (same kind) and metric."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(settings.sampling, settings.seed)
    if mask is not None:
        reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkLinear)
    # Regular-step descent, not plain gradient descent: the latter's one-off learning-rate
    # estimate explodes when the start is already close (tiny gradient) and throws the
    # transform tens of mm away. With scales from physical shift, a step of 1 moves any
    # voxel by about 1 mm, whether the parameter is an angle, a scale or a translation.
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=settings.max_step_mm,
        minStep=settings.min_step_mm,
        numberOfIterations=settings.iterations,
        relaxationFactor=0.5,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(settings.shrink_factors))
    reg.SetSmoothingSigmasPerLevel(list(settings.smoothing_sigmas))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(initial, inPlace=True)
    try:
        reg.Execute(fixed, moving)
    except RuntimeError as error:
        # SimpleITK's failures here describe the image (e.g. "All samples map outside moving
        # image buffer": it does not overlap the template at all), so the scan is excluded
        raise BadInputError("moving image", f"registration failed: {str(error).strip().splitlines()[-1]}") from error
    return initial, float(reg.GetMetricValue())


def _nmi_after(
    fixed: nib.Nifti1Image, moving: nib.Nifti1Image, fixed_to_moving: np.ndarray, fixed_mask: nib.Nifti1Image | None
) -> float:
    """NMI of ``fixed`` and ``moving`` resampled onto it, inside ``fixed_mask`` (or everywhere)."""
    warped = apply_affine(moving, fixed_to_moving, fixed).get_fdata()
    inside = np.asarray(fixed_mask.dataobj) > 0.5 if fixed_mask is not None else np.ones(fixed.shape[:3], bool)
    return normalized_mutual_information(np.asarray(fixed.dataobj, dtype=float)[inside], warped[inside])


def normalized_mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """Studholme's NMI (H(a) + H(b)) / H(a, b) of two equally long samples; in [1, 2]."""
    if a.size < 2:
        return float("nan")
    joint, _, _ = np.histogram2d(a.ravel(), b.ravel(), bins=bins)
    p = joint / joint.sum()

    def entropy(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    h_joint = entropy(p)
    return (entropy(p.sum(1)) + entropy(p.sum(0))) / h_joint if h_joint > 0 else float("nan")


# ---------------------------------------------------------------------------------------
# FSL FLIRT
# ---------------------------------------------------------------------------------------


def register_affine_flirt(
    moving: nib.Nifti1Image, fixed: nib.Nifti1Image, fixed_mask: nib.Nifti1Image | None = None, cost: str = "corratio"
) -> AffineResult:
    """12-dof FLIRT of ``moving`` to ``fixed`` via fslpy; needs FSL (see
    :func:`mmssl.preprocess.fsl.require_fsl`). FLIRT's matrix lives in scaled-voxel
    coordinates; fslpy's ``fromFlirt`` turns it into the world (RAS) moving->fixed map,
    which is inverted to this module's fixed->moving convention."""

    require_fsl()
    from fsl.data.image import Image
    from fsl.transform.flirt import fromFlirt
    from fsl.wrappers import flirt

    work = Path(tempfile.mkdtemp(prefix="mmssl-flirt-"))
    try:
        src, ref, omat = work / "moving.nii.gz", work / "fixed.nii.gz", work / "moving2fixed.mat"
        nib.save(moving, src)
        nib.save(fixed, ref)
        flirt(str(src), str(ref), omat=str(omat), dof=12, cost=cost)
        moving_to_fixed = fromFlirt(np.loadtxt(omat), Image(str(src)), Image(str(ref)), "world", "world")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fixed_to_moving = np.linalg.inv(moving_to_fixed)
    return AffineResult(fixed_to_moving, _nmi_after(fixed, moving, fixed_to_moving, fixed_mask))

