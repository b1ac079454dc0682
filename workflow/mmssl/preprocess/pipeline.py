"""The preprocessing of one scan, in memory and file to file.

Structural image (T1w, T2w or FLAIR): brain mask, 12-dof affine to the MNI152 template,
resampling onto the 3 mm 64³ grid. The template is a T1w; the registration's metric
(Mattes mutual information) does not need the contrasts to match. BOLD: fALFF (and ALFF)
in native space, the mean EPI registered to the template, the maps moved onto the same
grid. :func:`preprocess_anat_files` / :func:`preprocess_bold_files` read the raw scan,
validate its header first (:mod:`mmssl.preprocess.header`), and write every derivative
named by :func:`mmssl.paths.derivative_specs`. Input that cannot be used raises
:class:`~mmssl.errors.BadInputError`; anything else is a bug and propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from mmssl.io import write_json, write_tsv
from mmssl.errors import BadInputError
from mmssl.paths import BOLD, alff_wanted
from mmssl.preprocess.falff import FalffSettings, GivenTR, falff_file
from mmssl.preprocess.header import checked_header
from mmssl.preprocess.masking import brain_mask_fsl, brain_mask_python, register_to_template, template_metric_mask
from mmssl.preprocess.motion import confounds_table, mcflirt_corrected, motion_summary
from mmssl.preprocess.qc import structural_metric_keys
from mmssl.preprocess.registration import AffineResult, register_affine_flirt
from mmssl.preprocess.settings import MriSettings
from mmssl.preprocess.spatial import fov_coverage, grid_brain_mask, mni_grid, mni_template, to_grid, to_grid_masked, zero_outside
from mmssl.preprocess.volumes import load_map, load_mask, load_volume, save_nifti, save_xfm
from mmssl.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class T1Result:
    """image: the brain-masked structural image (a T1w, T2w, FLAIR: any modality of the
    structural pipeline) on the 64³ grid; mask: its uint8 brain mask; registration:
    template->native affine; mask_volume_ml: the native brain mask's volume."""

    image: nib.Nifti1Image
    mask: nib.Nifti1Image
    registration: AffineResult
    mask_volume_ml: float


def t1_to_mni(image: nib.Nifti1Image, settings: MriSettings) -> T1Result:
    """Skull-strip and affinely register a native structural image (T1w, T2w or FLAIR),
    resample it onto the 3 mm grid.

    python: register the head (masking via the template); the grid mask is the template
    brain, dilated. fsl: BET brain registered by FLIRT; the grid mask is BET's mask moved
    (not dilated: BET's edge is the subject's own)."""
    grid = mni_grid(settings.grid)
    if settings.backend == "python":
        native = brain_mask_python(image, settings.registration, settings.brain_mask)
        registration = native.registration
        assert registration is not None
        mask = grid_brain_mask(settings.grid, settings.brain_mask.dilate_voxels, settings.brain_mask.template_threshold)
        image_grid = zero_outside(to_grid(image, registration.fixed_to_moving, grid), mask)
    else:
        native = brain_mask_fsl(image, settings.brain_mask)
        assert native.brain is not None
        res = settings.brain_mask.registration_resolution
        registration = register_affine_flirt(native.brain, mni_template(res), template_metric_mask(settings.brain_mask))
        # normalised interpolation: BET's zeros must not darken the brain's edge
        image_grid, mask = to_grid_masked(native.brain, native.mask, registration.fixed_to_moving, grid)
    mask_img = nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), grid.affine)
    return T1Result(image_grid, mask_img, registration, native.volume_ml)


@dataclass
class FalffMniResult:
    """falff: fALFF on the 64³ grid, 0 outside ``mask`` (template brain ∩ moved EPI mask);
    registration: template->native-EPI affine; falff_mean_in_brain: mean over ``mask``;
    coverage: the share of the template brain inside the run's field of view
    (:func:`~mmssl.preprocess.spatial.fov_coverage`)."""

    falff: nib.Nifti1Image
    mask: nib.Nifti1Image
    registration: AffineResult
    falff_mean_in_brain: float
    coverage: float


def falff_to_mni(
    falff: nib.Nifti1Image, mean_epi: nib.Nifti1Image, epi_mask: nib.Nifti1Image | None, settings: MriSettings
) -> FalffMniResult:
    """Register the (brain-masked) mean EPI to the template and move the fALFF map along."""
    if falff.shape[:3] != mean_epi.shape[:3] or not np.allclose(falff.affine, mean_epi.affine, atol=1e-3):
        raise ValueError(f"fALFF map {falff.shape} and mean EPI {mean_epi.shape} are not on the same grid")
    moving = mean_epi
    if epi_mask is not None:
        moving = zero_outside(mean_epi, np.asarray(epi_mask.dataobj) > 0)
    if settings.backend == "python":
        registration = register_to_template(moving, settings.registration_epi, settings.brain_mask)
    else:
        res = settings.brain_mask.registration_resolution
        registration = register_affine_flirt(moving, mni_template(res), template_metric_mask(settings.brain_mask))
    grid = mni_grid(settings.grid)
    mask = grid_brain_mask(settings.grid, settings.brain_mask.dilate_voxels, settings.brain_mask.template_threshold).copy()
    brain = grid_brain_mask(settings.grid, 0, settings.brain_mask.template_threshold)
    coverage = fov_coverage(mean_epi, registration.fixed_to_moving, grid, brain)
    if epi_mask is not None:
        falff_grid, valid = to_grid_masked(falff, epi_mask, registration.fixed_to_moving, grid)
        mask &= valid
    else:
        falff_grid = to_grid(falff, registration.fixed_to_moving, grid)
    falff_grid = zero_outside(falff_grid, mask)
    values = np.asarray(falff_grid.dataobj)[mask]
    mean = float(values.mean()) if values.size else float("nan")
    return FalffMniResult(falff_grid, nib.Nifti1Image(mask.astype(np.uint8), grid.affine), registration, mean, coverage)


# ---------------------------------------------------------------------------------------
# One scan, file to file (the rules' preprocess-anat / preprocess-bold)
# ---------------------------------------------------------------------------------------


def preprocess_anat_files(image: str | Path, suffix: str, out: Mapping[str, str | Path], settings: MriSettings) -> dict[str, Any]:
    """Native structural image ``image`` of BIDS suffix ``suffix`` (a structural modality
    of :data:`mmssl.modalities.MODALITIES`: T1w, T2w, FLAIR; the header limits ``preprocess.header.<suffix>`` apply) -> ``out["image"]``,
    ``out["mask"]``, ``out["xfm"]`` and the QC JSON ``out["qc"]`` (returned too): backend,
    native brain volume (ml), NMI after registration, the optimiser's final metric (keys
    of :func:`~mmssl.preprocess.qc.structural_metric_keys`) and the header checks' fields."""
    progress = Progress(f"preprocess {Path(image).name}: step", 3, log)
    header = checked_header(image, settings.header[suffix])
    progress.step(1, "header checked")
    result = t1_to_mni(load_volume(image), settings)
    progress.step(2, f"brain mask ({result.mask_volume_ml:.0f} ml) and 12-dof registration to MNI152")
    save_nifti(result.image, out["image"])
    save_nifti(result.mask, out["mask"], np.uint8)
    save_xfm(result.registration.fixed_to_moving, out["xfm"])
    volume_key, similarity_key, metric_key = structural_metric_keys(suffix)
    qc = {"backend": settings.backend, volume_key: result.mask_volume_ml,
          similarity_key: result.registration.similarity, metric_key: result.registration.metric, **header}
    write_json(qc, out["qc"])
    progress.step(3, "written")
    return qc


def preprocess_bold_files(
    bold: str | Path, sidecar: str | Path | GivenTR | None, out: Mapping[str, str | Path], settings: MriSettings,
    falff_settings: FalffSettings,
) -> dict[str, Any]:
    """Native BOLD run ``bold`` -> native fALFF map, EPI mask, mean EPI and confounds
    (``out["falff_native"]``, ``"mask_native"``, ``"boldref"``, ``"confounds"``), then the
    fALFF map on the 3 mm grid with its mask and transform (``"fALFF"``, ``"mask"``,
    ``"xfm"``), and the QC JSON ``out["qc"]`` (returned too). When ``out`` has ``"ALFF"``
    (and ``"alff_native"``) the ALFF map goes the same way, with the same transform and mask.
    ``sidecar``: the run's RepetitionTime as discovery resolved it (a GivenTR), or a sidecar
    file to read it from (None: the header's)."""
    with_alff = alff_wanted(out)  # the optional maps' keys are their sources' names
    progress = Progress(f"preprocess {Path(bold).name}: step", 4, log)
    header = checked_header(bold, settings.header[BOLD])
    progress.step(1, "header checked")
    with _bold_series(bold, settings.motion_correction) as (series, motion):
        result = falff_file(series, sidecar or None, out["falff_native"], out["mask_native"], out["boldref"], falff_settings,
                            alff_out_path=out["alff_native"] if with_alff else None)
    confounds = pd.DataFrame({"global_signal": result.global_signal, "dvars": result.dvars})
    summary: dict[str, float] = {}
    if motion is not None:
        confounds = pd.concat([confounds, confounds_table(motion)], axis=1)
        summary = motion_summary(motion, falff_settings.dummy_volumes)
    write_tsv(confounds, out["confounds"], na_rep="n/a")
    progress.step(2, f"fALFF in native space (TR {result.tr:g} s, {result.n_volumes} volumes)")
    mni = falff_to_mni(load_map(out["falff_native"]), load_volume(out["boldref"]), load_mask(out["mask_native"]), settings)
    progress.step(3, f"mean EPI registered to MNI152, coverage {mni.coverage:.0%}")
    if not mni.coverage >= settings.min_coverage:
        raise BadInputError(bold, f"partial coverage: the run covers {mni.coverage:.0%} of the MNI brain mask after "
                                  f"registration, below preprocess.min_coverage {settings.min_coverage:.0%}")
    save_nifti(mni.falff, out["fALFF"])
    save_nifti(mni.mask, out["mask"], np.uint8)
    save_xfm(mni.registration.fixed_to_moving, out["xfm"])
    qc = {"similarity_epi": mni.registration.similarity, "registration_metric_epi": mni.registration.metric,
          "falff_mean_in_brain": mni.falff_mean_in_brain, "coverage_epi": mni.coverage, "tr": result.tr, "n_volumes": result.n_volumes, **summary, **header}
    if with_alff:
        # the same transform and mask as fALFF: one registration of the mean EPI serves both maps
        alff = map_to_grid(load_map(out["alff_native"]), load_mask(out["mask_native"]), mni, settings)
        save_nifti(alff, out["ALFF"])
        qc["alff_mean_in_brain"] = float(np.asarray(alff.dataobj)[np.asarray(mni.mask.dataobj) > 0].mean())
    write_json(qc, out["qc"])
    progress.step(4, "written")
    return qc


def map_to_grid(native_map: nib.Nifti1Image, epi_mask: nib.Nifti1Image | None, moved: FalffMniResult,
                settings: MriSettings) -> nib.Nifti1Image:
    """Another native-EPI map of the run (ALFF) on the grid of ``moved`` (the run's
    :func:`falff_to_mni` result): its transform, interpolation and mask, so the two maps
    cover the very same voxels."""
    grid = mni_grid(settings.grid)
    transform = moved.registration.fixed_to_moving
    image = to_grid_masked(native_map, epi_mask, transform, grid)[0] if epi_mask is not None else to_grid(native_map, transform, grid)
    return zero_outside(image, np.asarray(moved.mask.dataobj) > 0)


@contextmanager
def _bold_series(bold: str | Path, motion_correction: bool) -> Iterator[tuple[str, np.ndarray | None]]:
    """The series fALFF reads and its (T, 6) motion parameters: the run itself and None, or
    its mcflirt-corrected copy (FSL backend). Bad input found in the corrected copy is
    reported under the original file's name."""
    if not motion_correction:
        yield str(bold), None
        return
    with mcflirt_corrected(bold) as (corrected, params):
        try:
            yield str(corrected), params
        except BadInputError as error:
            raise BadInputError(bold, error.reason) from error
