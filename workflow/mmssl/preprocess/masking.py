"""Brain masks of native structural images (every modality of the structural pipeline,
:data:`mmssl.modalities.MODALITIES`: T1w, T2w, FLAIR).

Two backends (config ``preprocess.backend``):

* ``python`` (default, no FSL): *registration + template mask*. The head is registered
  (12-dof, :func:`~mmssl.preprocess.registration.register_affine`) to nilearn's MNI152
  template, and the template's brain mask is pulled back onto the native grid. It needs
  nothing beyond SimpleITK and ships no weights; its accuracy is bounded by how well an
  affine aligns one brain to the template (no non-linear anatomy), which is also all
  the later 3 mm / 64³ volumes can resolve. The registration it makes is reused to put
  the image in MNI space, so masking costs one extra resampling. Measured with
  ``benchmarks/bench_preprocess_subject.py`` (1 mm synthetic heads with a skull-like
  shell, random affine): Dice with the true mask 0.996-0.997; 0.983-0.985 when the head
  is also bent by a smooth non-linear deformation of up to 4 mm, which an affine cannot
  follow. Real anatomy varies more than that, so expect lower Dice on real heads. No
  deep-learning skull stripper was compared (none with bundled weights is installed here).
* ``fsl``: FSL's ``robustfov`` (drop the neck) then ``bet``, through fslpy's wrappers.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from mmssl.preprocess.registration import AffineResult, RegistrationSettings, apply_affine, register_affine
from mmssl.preprocess.fsl import require_fsl
from mmssl.preprocess.spatial import mni_brain_mask, mni_template
from mmssl.settings import schema_settings

@schema_settings("brain_mask", "preprocess.brain_mask")
class MaskSettings:
    """Config key ``preprocess.brain_mask`` (defaults: the config schema).

    template_threshold: template intensity above which a voxel is brain (nilearn's 0.2).
    dilate_voxels: dilation of the final 3 mm MNI mask (authors: "dilated" MNI152 mask).
    registration_resolution: mm of the template the head is registered to (2: fast, and
        no less accurate at the 3 mm output resolution).
    bet_f: BET's fractional intensity threshold (``-f``; smaller = larger brain).
    """

    template_threshold: float
    dilate_voxels: int
    registration_resolution: int
    bet_f: float


@dataclass(frozen=True)
class NativeMask:
    """mask: native-grid uint8 brain mask. registration: the head->template affine used
    (None for FSL's BET, which needs none). brain: the skull-stripped head (FSL only)."""

    mask: nib.Nifti1Image
    registration: AffineResult | None
    brain: nib.Nifti1Image | None = None

    @property
    def volume_ml(self) -> float:
        voxel_ml = abs(np.linalg.det(self.mask.affine[:3, :3])) / 1000.0
        return float(np.count_nonzero(np.asarray(self.mask.dataobj)) * voxel_ml)


def register_to_template(
    img: nib.Nifti1Image, registration: RegistrationSettings, settings: MaskSettings | None = None
) -> AffineResult:
    """Affine of a native image (head or brain) to the MNI152 template; the metric sees only
    the template brain dilated by 2 voxels, since the template has no skull. ``settings``
    None: the schema's ``preprocess.brain_mask`` defaults."""
    settings = settings or MaskSettings.from_config({})
    resolution = settings.registration_resolution
    return register_affine(img, mni_template(resolution), registration, template_metric_mask(settings))


def template_metric_mask(settings: MaskSettings | None = None) -> nib.Nifti1Image:
    """The template brain dilated by 2 voxels, at the registration resolution: where the
    registration metric and the QC similarity are measured. Both backends use it, so
    their similarities share one scale and one set of QC thresholds."""
    settings = settings or MaskSettings.from_config({})
    mask = mni_brain_mask(settings.registration_resolution, settings.template_threshold)
    dilated = ndimage.binary_dilation(np.asarray(mask.dataobj) > 0, iterations=2).astype(np.uint8)
    return nib.Nifti1Image(dilated, mask.affine)


def brain_mask_python(
    image: nib.Nifti1Image,
    registration: RegistrationSettings | None = None,
    settings: MaskSettings | None = None,
) -> NativeMask:
    """Registration + template mask: register ``image`` (a head, 3D) to the template and pull
    the 1 mm template brain mask back onto ``image``'s grid (linear, > 0.5).

    ``registration`` / ``settings`` None: the schema's defaults of ``preprocess.registration``
    / ``preprocess.brain_mask``. Returns a :class:`NativeMask` whose ``registration`` maps
    template -> native world."""
    registration = registration or RegistrationSettings.from_config({})
    settings = settings or MaskSettings.from_config({})
    result = register_to_template(image, registration, settings)
    template_mask = mni_brain_mask(1, settings.template_threshold)
    # template->native pull for the image means native->template pull for the mask
    native = apply_affine(template_mask, result.moving_to_fixed, image, order=1).get_fdata() > 0.5
    return NativeMask(nib.Nifti1Image(native.astype(np.uint8), image.affine), result)


def brain_mask_fsl(image: nib.Nifti1Image, settings: MaskSettings | None = None) -> NativeMask:
    """FSL: ``robustfov`` (crop the neck) then ``bet -R`` (robust centre estimate) on the
    cropped head. The returned mask and brain are on the cropped grid, whose affine keeps
    world coordinates, so they can be resampled like any native image. ``settings`` None:
    the schema's ``preprocess.brain_mask`` defaults."""
    require_fsl()
    settings = settings or MaskSettings.from_config({})
    from fsl.wrappers import bet, robustfov

    work = Path(tempfile.mkdtemp(prefix="mmssl-bet-"))
    try:
        head, cropped, brain = work / "head.nii.gz", work / "fov.nii.gz", work / "brain"
        nib.save(image, head)
        robustfov(str(head), str(cropped))
        bet(str(cropped), str(brain), mask=True, robust=True, fracintensity=settings.bet_f)
        mask = nib.load(f"{brain}_mask.nii.gz")
        brain_img = nib.load(f"{brain}.nii.gz")
        # load into memory before the folder goes
        mask = nib.Nifti1Image(np.asarray(mask.dataobj, dtype=np.uint8), mask.affine)
        brain_img = nib.Nifti1Image(np.asarray(brain_img.dataobj, dtype=np.float32), brain_img.affine)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return NativeMask(mask, None, brain_img)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap 2|A∩B| / (|A| + |B|) of two boolean arrays of equal shape."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"dice: shapes differ, {a.shape} vs {b.shape}")
    total = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / total) if total else 1.0
