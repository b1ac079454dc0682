"""Affine registration, RAS/LPS bookkeeping, transform files, template masking, FSL checks."""

from __future__ import annotations

import numpy as np
import nibabel as nib
import pytest
import SimpleITK as sitk
from scipy import ndimage

from mmssl.preprocess.fsl import FslNotFoundError, require_fsl
from mmssl.preprocess.masking import brain_mask_python, dice
from mmssl.preprocess.registration import (
    RegistrationSettings,
    apply_affine,
    load_transform,
    matrix_to_sitk_transform,
    nib_to_sitk,
    ras_to_lps,
    register_affine,
    save_transform,
    sitk_to_nib,
)
from mmssl.preprocess.spatial import GRID_THRESHOLD, mni_brain_mask, mni_template


def rotation(degrees: tuple[float, float, float]) -> np.ndarray:
    rx, ry, rz = np.deg2rad(degrees)
    rot_x = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    rot_y = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    rot_z = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x


def random_affine(rng: np.random.Generator) -> np.ndarray:
    """Template -> native world: rotation <= 10 deg, translation <= 10 mm, scale 0.9-1.1."""
    m = np.eye(4)
    m[:3, :3] = rotation(tuple(rng.uniform(-10, 10, 3))) @ np.diag(rng.uniform(0.9, 1.1, 3))
    m[:3, 3] = rng.uniform(-10, 10, 3)
    return m


def native_head(world_from_mni: np.ndarray, epi: bool = False) -> tuple[nib.Nifti1Image, np.ndarray]:
    """The 2 mm template with a skull-like shell (T1), or brain-only T2*-like at 4 mm (EPI),
    seen on an oblique-free LAS native grid; and the true native brain mask."""
    tpl, mask = mni_template(2), mni_brain_mask(2, GRID_THRESHOLD)
    brain = np.asarray(mask.dataobj) > 0
    dist = ndimage.distance_transform_edt(~brain, sampling=2.0)
    if epi:
        head = np.where(brain, 80 + 80 * (1 - tpl.get_fdata()), 0.0)
    else:
        head = np.select([brain, dist <= 3, dist <= 9, dist <= 15], [tpl.get_fdata(), 0.12, 0.04, 0.75], 0.0)
    voxel = 4.0 if epi else 2.0
    shape = (int(200 / voxel), int(240 / voxel), int(200 / voxel))
    affine = np.diag([-voxel, voxel, voxel, 1.0])
    affine[:3, 3] = world_from_mni[:3, 3] + [0, -20, 10] - affine[:3, :3] @ (np.array(shape) - 1) / 2
    pull = np.linalg.inv(world_from_mni)  # the native image at x shows the template at inv(W) x
    img = apply_affine(nib.Nifti1Image(head.astype(np.float32), tpl.affine), pull, (shape, affine))
    truth = apply_affine(nib.Nifti1Image(brain.astype(np.float32), tpl.affine), pull, (shape, affine)).get_fdata() > 0.5
    return img, truth


def mean_displacement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance (mm) between where two template->native maps send template brain voxels."""
    mask = mni_brain_mask(2, GRID_THRESHOLD)
    idx = np.argwhere(np.asarray(mask.dataobj) > 0)
    pts = np.c_[idx, np.ones(len(idx))] @ mask.affine.T
    return float(np.linalg.norm((pts @ a.T - pts @ b.T)[:, :3], axis=1).mean())


def blob_image(affine: np.ndarray, shape=(40, 44, 36), centre_vox=(15, 25, 20)) -> nib.Nifti1Image:
    """A smooth Gaussian blob: linear interpolation of it is accurate, so two resamplers agree."""
    grid = np.indices(shape).astype(float)
    r2 = sum((g - c) ** 2 for g, c in zip(grid, centre_vox))
    return nib.Nifti1Image(np.exp(-r2 / 30.0).astype(np.float32), affine)


# --- RAS <-> LPS -------------------------------------------------------------------------

OBLIQUE = np.array([[-2.0, 0.1, 0.0, 40.0], [0.0, 1.9, -0.5, -60.0], [0.0, 0.5, 1.9, -30.0], [0, 0, 0, 1]])


def orthogonalised(affine: np.ndarray) -> np.ndarray:
    u, s, vt = np.linalg.svd(affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0))
    out = affine.copy()
    out[:3, :3] = (u @ vt) * np.linalg.norm(affine[:3, :3], axis=0)
    return out


def test_nib_to_sitk_puts_every_voxel_at_the_same_world_point():
    affine = orthogonalised(OBLIQUE)
    img = blob_image(affine)
    s = nib_to_sitk(img)
    for ijk in [(0, 0, 0), (10, 20, 30), (39, 1, 7)]:
        lps = np.array(s.TransformIndexToPhysicalPoint(ijk))
        ras = (affine @ np.r_[ijk, 1])[:3]
        np.testing.assert_allclose(lps, ras * [-1, -1, 1], atol=1e-6)
        assert s.GetPixel(*ijk) == pytest.approx(float(img.dataobj[ijk]))
    back = sitk_to_nib(s)
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    np.testing.assert_array_equal(back.get_fdata(), img.get_fdata())


@pytest.mark.parametrize(
    "kind",
    ["translation", "rotation"],
)
def test_sitk_resampling_with_converted_matrix_equals_ras_resampling(kind):
    """The same RAS transform applied by SimpleITK (after ras_to_lps) and by scipy in RAS."""
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [40, -44, -36]
    img = blob_image(affine)
    m = np.eye(4)
    if kind == "translation":
        m[:3, 3] = [6.0, -4.0, 3.0]
    else:  # 12 degrees about an axis through a point away from the origin
        centre = np.array([10.0, -5.0, 4.0])
        m[:3, :3] = rotation((5, -8, 12))
        m[:3, 3] = centre - m[:3, :3] @ centre
    expected = apply_affine(img, m, img).get_fdata()
    tx = matrix_to_sitk_transform(ras_to_lps(m))
    got = sitk_to_nib(sitk.Resample(nib_to_sitk(img), nib_to_sitk(img), tx, sitk.sitkLinear, 0.0)).get_fdata()
    assert np.abs(expected).max() > 0.5  # the blob is still in view
    # 2e-3: the two libraries treat the outermost half voxel differently (only the blob's
    # ~1e-4 tail lives there); a sign or centre error moves the blob, a difference ~1.
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_pull_direction_of_a_translation():
    """fixed_to_moving = +6 mm in R: the output at x shows the input at x + 6 mm, so the blob
    moves 6 mm to the left (3 voxels of 2 mm; x axis of the grid points R)."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    img = blob_image(affine)
    m = np.eye(4)
    m[0, 3] = 6.0
    out = apply_affine(img, m, img).get_fdata()
    com_in, com_out = ndimage.center_of_mass(img.get_fdata()), ndimage.center_of_mass(out)
    np.testing.assert_allclose(np.subtract(com_out, com_in), [-3, 0, 0], atol=0.05)


@pytest.mark.parametrize("suffix", [".txt", ".tfm"])
def test_transform_file_round_trip(tmp_path, suffix):
    m = np.eye(4)
    m[:3, :3] = rotation((3, -7, 9)) @ np.diag([1.05, 0.95, 1.02])
    m[:3, 3] = [4.0, -9.0, 2.5]
    path = save_transform(m, tmp_path / f"xfm{suffix}")
    np.testing.assert_allclose(load_transform(path), m, atol=1e-8)
    if suffix == ".tfm":  # what ANTs/ITK read: the same map, in LPS
        tx = sitk.ReadTransform(str(path))
        p_ras = np.array([12.0, -30.0, 45.0])
        q_lps = np.array(tx.TransformPoint((p_ras * [-1, -1, 1]).tolist()))
        np.testing.assert_allclose(q_lps * [-1, -1, 1], (m @ np.r_[p_ras, 1])[:3], atol=1e-6)


def test_load_transform_rejects_a_non_affine(tmp_path):
    bad = tmp_path / "bad.txt"
    np.savetxt(bad, np.ones((4, 4)))
    with pytest.raises(ValueError, match="bad.txt"):
        load_transform(bad)


# --- registration ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t1_case():
    world_from_mni = random_affine(np.random.default_rng(7))
    img, truth = native_head(world_from_mni)
    return world_from_mni, img, truth


@pytest.fixture(scope="module")
def t1_masked(t1_case):
    """The python backend on the seed-7 head: registration + template mask (one registration
    shared by the tests below)."""
    return brain_mask_python(t1_case[1])


def check_recovered(fixed_to_moving: np.ndarray, world_from_mni: np.ndarray) -> None:
    assert mean_displacement(np.eye(4), world_from_mni) > 3.0  # the problem is not trivial
    error = mean_displacement(fixed_to_moving, world_from_mni)
    assert error < 3.0, f"mean displacement {error:.2f} mm exceeds one 3 mm voxel"
    assert error < 1.0  # what it achieves here (~0.2 mm); a regression shows up long before 3 mm


def test_registration_recovers_a_known_random_affine(t1_case, t1_masked):
    world_from_mni = t1_case[0]
    result = t1_masked.registration
    check_recovered(result.fixed_to_moving, world_from_mni)
    assert result.similarity > 1.2
    np.testing.assert_allclose(result.moving_to_fixed @ result.fixed_to_moving, np.eye(4), atol=1e-9)


def test_registration_recovers_another_affine_without_the_rigid_stage():
    world_from_mni = random_affine(np.random.default_rng(11))
    img, _ = native_head(world_from_mni)
    mask = mni_brain_mask(2, GRID_THRESHOLD)
    dilated = nib.Nifti1Image(ndimage.binary_dilation(np.asarray(mask.dataobj) > 0, iterations=2).astype(np.uint8), mask.affine)
    result = register_affine(img, mni_template(2), RegistrationSettings.from_config({"rigid_first": False}), dilated)
    check_recovered(result.fixed_to_moving, world_from_mni)


def test_registration_of_an_epi_like_image_with_inverted_contrast():
    from mmssl.preprocess.masking import register_to_template
    from mmssl.preprocess.settings import MriSettings

    epi_registration = MriSettings.from_config({}).registration_epi  # the schema's defaults for mean EPIs

    world_from_mni = random_affine(np.random.default_rng(3))
    img, _ = native_head(world_from_mni, epi=True)
    result = register_to_template(img, epi_registration)
    assert mean_displacement(result.fixed_to_moving, world_from_mni) < 3.0
    # reproducible: the sampling seed is fixed (SimpleITK's seed 0 would mean wall clock,
    # ~0.1 mm run to run); only the threads' summation order is left (~1e-10)
    again = register_to_template(img, epi_registration)
    np.testing.assert_allclose(again.fixed_to_moving, result.fixed_to_moving, atol=1e-6)


def test_misregistered_image_has_low_similarity(t1_case):
    """NMI is what QC thresholds: a 20 mm shifted, 20 degree rotated fit must score lower."""
    world_from_mni, img, _ = t1_case
    from mmssl.preprocess.registration import _nmi_after

    good = _nmi_after(mni_template(2), img, world_from_mni, mni_brain_mask(2, GRID_THRESHOLD))
    wrong = world_from_mni.copy()
    wrong[:3, :3] = rotation((20, 0, 0)) @ wrong[:3, :3]
    wrong[:3, 3] += [0, 20, 0]
    bad = _nmi_after(mni_template(2), img, wrong, mni_brain_mask(2, GRID_THRESHOLD))
    assert good > 1.2 > bad


def test_python_brain_mask_matches_the_true_mask(t1_case, t1_masked):
    truth = t1_case[2]
    native = t1_masked
    assert dice(np.asarray(native.mask.dataobj) > 0, truth) > 0.95
    expected_ml = truth.sum() * 8 / 1000
    assert native.volume_ml == pytest.approx(expected_ml, rel=0.05)


def test_registration_settings_reject_unknown_keys():
    with pytest.raises(ValueError, match=r"preprocess\.registration: .*'bogus' was unexpected.*allowed keys: bins"):
        RegistrationSettings.from_config({"bogus": 1})
    with pytest.raises(ValueError, match="same length"):
        RegistrationSettings.from_config({"shrink_factors": [4, 2], "smoothing_sigmas": [1, 0, 0]})
    with pytest.raises(ValueError, match=r"preprocess\.registration\.sampling: 0 is less than or equal to the minimum of 0"):
        RegistrationSettings.from_config({"sampling": 0})
    epi = RegistrationSettings.from_config({"iterations": 50}, schema="registration_epi", section="preprocess.registration_epi")
    assert (epi.bins, epi.smoothing_sigmas, epi.iterations) == (16, (2.0, 1.0, 1.0), 50)


# --- FSL -----------------------------------------------------------------------------------


def test_require_fsl_names_fsldir_when_unset(monkeypatch):
    monkeypatch.delenv("FSLDIR", raising=False)
    with pytest.raises(FslNotFoundError, match="FSLDIR"):
        require_fsl()


def test_require_fsl_names_fsldir_when_it_lacks_the_tools(monkeypatch, tmp_path):
    monkeypatch.setenv("FSLDIR", str(tmp_path))
    with pytest.raises(FslNotFoundError, match=f"FSLDIR={tmp_path}.*bin/bet"):
        require_fsl()


def test_fsl_backend_without_fsl_fails_before_any_work(monkeypatch, t1_case):
    from mmssl.preprocess.pipeline import t1_to_mni
    from mmssl.preprocess.settings import MriSettings

    monkeypatch.delenv("FSLDIR", raising=False)
    with pytest.raises(FslNotFoundError, match="FSLDIR"):
        t1_to_mni(t1_case[1], MriSettings.from_config({"backend": "fsl"}))


def test_fsl_backend_plumbing_with_stub_tools(tmp_path, t1_case, stub_fsl):
    """FSL cannot be installed here: stand-in executables (conftest.FSL_STUBS) check the
    fslpy calls, file names, and that FLIRT's matrix comes back as the template->native world map."""
    from mmssl.preprocess.pipeline import t1_to_mni
    from mmssl.preprocess.settings import MriSettings

    world_from_mni, img, truth = t1_case
    nib.save(nib.Nifti1Image(truth.astype(np.uint8), img.affine), tmp_path / "mask.nii.gz")
    np.savetxt(tmp_path / "m2f.txt", np.linalg.inv(world_from_mni))
    stub_fsl(STUB_MASK=tmp_path / "mask.nii.gz", STUB_MOVING_TO_FIXED=tmp_path / "m2f.txt")
    result = t1_to_mni(img, MriSettings.from_config({"backend": "fsl"}))
    np.testing.assert_allclose(result.registration.fixed_to_moving, world_from_mni, atol=1e-4)
    assert result.mask_volume_ml == pytest.approx(truth.sum() * 8 / 1000)
    mask = result.mask.get_fdata() > 0
    assert np.all(result.image.get_fdata()[~mask] == 0)
    assert result.registration.similarity > 1.2
