"""Header validation (mmssl.preprocess.header): every image is written to disk with nibabel and
read back, so the checks see real NIfTI headers (float32 srows, float32 quaternions, codes)."""

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mmssl.errors import BadInputError
from mmssl.preprocess.header import HeaderLimits, QC_FIELDS, check_header, read_header

T1W = HeaderLimits(voxel_mm=(0.3, 4.0), shape=(8, 512), sform_qform_tolerance_mm=1.0)
SHAPE = (10, 12, 14)
# LAS 2 mm (x flipped, as dcm2niix writes it), with the origin near the centre of the box
LAS = np.array([[-2.0, 0, 0, 9.0], [0, 2.0, 0, -11.0], [0, 0, 2.0, -13.0], [0, 0, 0, 1]])


def _rot_z(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    rot = np.eye(4)
    rot[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    return rot


def _translate(x: float, y: float, z: float) -> np.ndarray:
    out = np.eye(4)
    out[:3, 3] = (x, y, z)
    return out


# an oblique transform: rotated 7 deg about z and 3 deg about x, so quaternion rounding is exercised
_ROT_X3 = np.array([[1, 0, 0, 0], [0, math.cos(0.0523599), -math.sin(0.0523599), 0],
                    [0, math.sin(0.0523599), math.cos(0.0523599), 0], [0, 0, 0, 1]])
OBLIQUE = _rot_z(7) @ _ROT_X3 @ LAS


def _write(folder: Path, *, sform=LAS, qform=LAS, sform_code=1, qform_code=1, shape=SHAPE, name="img.nii.gz",
           edit=None) -> Path:
    """Save an int16 image whose header holds exactly these transforms and codes; return its path.

    The image is built with affine=None so nibabel does not rewrite the sform/qform from an
    affine on save; ``edit(header)`` may then change raw fields (NaN, zero pixdim, ...)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header.set_sform(sform, code=sform_code)
    if qform is not None:
        header.set_qform(qform, code=qform_code)
    else:
        header.set_zooms((2.0,) * len(shape))
        header["qform_code"] = 0
    if edit is not None:
        edit(header)
    path = folder / name
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), None, header), path)
    return path


def _excluded(path: Path, limits: HeaderLimits = T1W) -> BadInputError:
    with pytest.raises(BadInputError) as info:
        check_header(read_header(path), path, limits)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    return info.value


def _expected_shift(sform: np.ndarray, qform: np.ndarray, shape=SHAPE) -> float:
    corners = np.array([[i, j, k, 1] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)], float)
    return float(np.linalg.norm((corners @ sform.T - corners @ qform.T)[:, :3], axis=1).max())


def test_clean_image_with_both_transforms_passes(tmp_path):
    path = _write(tmp_path)
    img = read_header(path)
    qc = check_header(img, path, T1W)
    assert tuple(qc) == QC_FIELDS
    assert qc == {"header_sform_code": 1, "header_qform_code": 1, "header_affine_source": "sform",
                  "header_sform_qform_shift_mm": 0.0, "header_sform_qform_angle_deg": 0.0,
                  "header_sform_qform_disagree": 0}
    np.testing.assert_array_equal(img.affine, LAS)


def test_clean_oblique_image_passes(tmp_path):
    path = _write(tmp_path, sform=OBLIQUE, qform=OBLIQUE)
    qc = check_header(read_header(path), path, T1W)
    # the qform is a float32 quaternion: not bit-identical to the sform, but far below 1e-2
    assert qc["header_sform_qform_shift_mm"] <= 0.01 and qc["header_sform_qform_angle_deg"] <= 0.01
    assert qc["header_sform_qform_disagree"] == 0


def _write_header_only(path: Path, header: nib.Nifti1Header) -> Path:
    """A .nii holding only the header (no data block): realistic sizes without writing the data."""
    header["vox_offset"] = 352
    path.write_bytes(header.binaryblock + b"\0" * 4)  # 348-byte header + empty extension flag
    return path


def test_oblique_las_t1w_qform_precision_not_flagged(tmp_path):
    # A 1 mm 176x256x256 LAS T1w tilted 10 deg, qform written from the very sform. Its rotation
    # part is near 180 deg, where nibabel's get_qform zeroes the quaternion's a (0.35 mm, 0.06 deg
    # off); read at face value the stored quaternion is within 0.05 mm / 0.01 deg.
    tilt_x, tilt_y = np.eye(4), np.eye(4)
    a, b = math.radians(10.3), math.radians(-0.3)
    tilt_x[1:3, 1:3] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    tilt_y[[[0], [2]], [0, 2]] = [[math.cos(b), math.sin(b)], [-math.sin(b), math.cos(b)]]
    affine = _rot_z(4.0) @ tilt_y @ tilt_x @ np.diag([-1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (90.0, -130.0, -120.0)
    header = nib.Nifti1Header()
    header.set_data_shape((176, 256, 256))
    header.set_data_dtype(np.int16)
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    path = _write_header_only(tmp_path / "t1w.nii", header)
    img = read_header(path)
    tight = HeaderLimits(voxel_mm=(0.3, 4.0), shape=(8, 512), sform_qform_tolerance_mm=0.1)
    qc = check_header(img, path, tight)
    assert qc["header_sform_qform_shift_mm"] < 0.05 and qc["header_sform_qform_angle_deg"] < 0.01
    assert qc["header_sform_qform_disagree"] == 0
    assert img.shape == (176, 256, 256)


def test_default_nibabel_image_sform_only(tmp_path):
    path = tmp_path / "default.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.int16), LAS), path)  # nibabel writes sform_code 2, qform_code 0
    qc = check_header(read_header(path), path, T1W)
    assert qc == {"header_sform_code": 2, "header_qform_code": 0, "header_affine_source": "sform",
                  "header_sform_qform_shift_mm": 0.0, "header_sform_qform_angle_deg": 0.0,
                  "header_sform_qform_disagree": 0}


def test_qform_only_reports_qform_source(tmp_path):
    path = _write(tmp_path, sform_code=0)
    qc = check_header(read_header(path), path, T1W)
    assert (qc["header_sform_code"], qc["header_qform_code"], qc["header_affine_source"]) == (0, 1, "qform")
    assert qc["header_sform_qform_shift_mm"] == 0.0 and qc["header_sform_qform_disagree"] == 0


def test_nan_in_sform_excluded(tmp_path):
    path = _write(tmp_path, edit=lambda h: h["srow_x"].__setitem__(0, np.nan))
    error = _excluded(path)
    assert error.reason == "non-finite sform (sform_code 1): srow_x[0]=nan"


def test_inf_in_qform_offset_excluded(tmp_path):
    path = _write(tmp_path, sform_code=0, edit=lambda h: h.__setitem__("qoffset_y", np.inf))
    error = _excluded(path)
    assert error.reason == "non-finite qform (qform_code 1): qoffset_y=inf"


def test_nan_in_qform_excluded_even_when_sform_is_used(tmp_path):
    # nibabel would use the (finite) sform, but a NaN qform is still a broken header
    path = _write(tmp_path, edit=lambda h: h.__setitem__("quatern_c", np.nan))
    assert _excluded(path).reason == "non-finite qform (qform_code 1): quatern_c=nan"


def test_singular_sform_excluded(tmp_path):
    singular = LAS.copy()
    singular[1, 1] = 0.0  # zero voxel size along y
    path = _write(tmp_path, sform=singular, qform=None)
    assert _excluded(path).reason == "singular sform: |det| of its 3x3 part is 0 mm^3 (voxel axes 2 x 0 x 2 mm)"


def test_singular_qform_excluded():
    # nibabel's loader resets a zero pixdim to 1, so this can only come from an in-memory header
    header = nib.Nifti1Header()
    header.set_data_shape(SHAPE)
    header.set_qform(LAS, code=1)
    img = nib.Nifti1Image(np.zeros(SHAPE, np.int16), None, header)
    img.header["pixdim"][3] = 0.0  # after construction, which also resets it
    with pytest.raises(BadInputError) as info:
        check_header(img, "mem.nii", T1W)
    assert info.value.reason == "singular qform: |det| of its 3x3 part is 0 mm^3 (voxel axes 2 x 2 x 0 mm)"


def test_invalid_quaternion_excluded(tmp_path):
    def edit(header):
        for name in ("quatern_b", "quatern_c", "quatern_d"):
            header[name] = 0.75
    path = _write(tmp_path, edit=edit)  # loads (the sform is used), but the qform is no rotation
    assert _excluded(path).reason == ("invalid qform: quaternion (b, c, d) = (0.75, 0.75, 0.75) is not a rotation "
                                      "(b^2 + c^2 + d^2 = 1.6875 > 1)")


def test_voxel_size_outside_limits_excluded(tmp_path):
    big = np.diag([-12.0, 1.0, 1.0, 1.0])
    path = _write(tmp_path, sform=big, qform=big)
    assert _excluded(path).reason == "voxel size 12 x 1 x 1 mm outside the allowed range [0.3, 4] mm per axis"


def test_voxel_size_at_limit_passes(tmp_path):
    edge = np.diag([-4.0, 0.3, 4.0, 1.0])
    path = _write(tmp_path, sform=_rot_z(30) @ edge, qform=_rot_z(30) @ edge)
    assert check_header(read_header(path), path, T1W)["header_sform_qform_disagree"] == 0


def test_dimension_of_two_voxels_excluded(tmp_path):
    path = _write(tmp_path, shape=(10, 2, 14))
    assert _excluded(path).reason == "spatial dimensions 10 x 2 x 14 voxels outside the allowed range [8, 512] per axis"


def test_4d_image_only_spatial_dims_checked(tmp_path):
    bold = HeaderLimits(voxel_mm=(1.0, 6.0), shape=(8, 64), sform_qform_tolerance_mm=1.0)
    path = _write(tmp_path, shape=(10, 12, 14, 100))  # 100 volumes > 64: must not be limited
    qc = check_header(read_header(path), path, bold)
    assert qc["header_sform_qform_disagree"] == 0
    path = _write(tmp_path, shape=(10, 12, 65, 100), name="big.nii.gz")
    assert _excluded(path, bold).reason == "spatial dimensions 10 x 12 x 65 voxels outside the allowed range [8, 64] per axis"


def test_left_right_flip_excluded(tmp_path):
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0]) @ LAS  # x axis negated: LAS -> RAS
    path = _write(tmp_path, sform=LAS, qform=flipped)
    error = _excluded(path)
    assert error.reason == "sform and qform disagree in handedness (possible left-right flip): sform is LAS, qform is RAS"
    assert "left-right flip" in error.reason


def test_rotation_of_10_degrees_reported_not_excluded(tmp_path):
    rotated = _rot_z(10) @ LAS
    path = _write(tmp_path, sform=LAS, qform=rotated)
    qc = check_header(read_header(path), path, T1W)
    assert abs(qc["header_sform_qform_angle_deg"] - 10.0) < 0.1
    assert qc["header_sform_qform_shift_mm"] == pytest.approx(_expected_shift(LAS, rotated), abs=2e-3)
    assert qc["header_sform_qform_shift_mm"] > 1.0  # the corners move by several mm
    assert qc["header_sform_qform_disagree"] == 1
    assert qc["header_affine_source"] == "sform"


def test_rotation_angle_ignores_voxel_size_and_oblique_base(tmp_path):
    # anisotropic voxels and an oblique sform: only the extra 10 deg counts
    base = _rot_z(20) @ _ROT_X3 @ np.diag([-1.0, 1.2, 3.0, 1.0])
    path = _write(tmp_path, sform=base, qform=_rot_z(10) @ base)
    assert abs(check_header(read_header(path), path, T1W)["header_sform_qform_angle_deg"] - 10.0) < 0.01


@pytest.mark.parametrize("tolerance, disagree", [(5.0, 0), (1.0, 1)])
def test_translation_of_3_mm_against_tolerance(tmp_path, tolerance, disagree):
    path = _write(tmp_path, sform=LAS, qform=_translate(0.0, 0.0, 3.0) @ LAS)
    limits = HeaderLimits(voxel_mm=(0.3, 4.0), shape=(8, 512), sform_qform_tolerance_mm=tolerance)
    qc = check_header(read_header(path), path, limits)
    assert qc["header_sform_qform_shift_mm"] == 3.0
    assert qc["header_sform_qform_angle_deg"] == 0.0
    assert qc["header_sform_qform_disagree"] == disagree


def test_no_sform_no_qform_excluded(tmp_path):
    path = _write(tmp_path, sform_code=0, qform_code=0)
    assert _excluded(path).reason == ("neither sform nor qform is set (sform_code and qform_code are 0): "
                                      "orientation unknown")


def test_truncated_data_block_still_passes(tmp_path):
    path = _write(tmp_path, name="img.nii")  # uncompressed: data at offset 352
    full = path.read_bytes()
    assert len(full) == 352 + 2 * int(np.prod(SHAPE))
    path.write_bytes(full[:352 + 100])  # header intact, 100 of 3360 data bytes left
    img = read_header(path)
    qc = check_header(img, path, T1W)
    assert qc["header_sform_qform_shift_mm"] == 0.0
    with pytest.raises(Exception):  # the data really is unreadable: check_header did not read it
        np.asanyarray(img.dataobj)


def test_nifti2_image_passes(tmp_path):
    path = tmp_path / "img2.nii.gz"
    nib.save(nib.Nifti2Image(np.zeros(SHAPE, np.int16), LAS), path)
    img = read_header(path)
    assert isinstance(img, nib.Nifti2Image)
    assert check_header(img, path, T1W)["header_affine_source"] == "sform"


def test_zero_byte_file_is_empty(tmp_path):
    path = tmp_path / "empty.nii.gz"
    path.write_bytes(b"")
    with pytest.raises(BadInputError) as info:
        read_header(path)
    assert (info.value.path, info.value.reason) == (str(path), "empty file (0 bytes)")


def test_missing_and_garbage_files(tmp_path):
    missing = tmp_path / "missing.nii.gz"
    with pytest.raises(BadInputError) as info:
        read_header(missing)
    assert (info.value.path, info.value.reason) == (str(missing), "file not found")
    garbage = tmp_path / "garbage.nii"
    garbage.write_bytes(b"not a nifti" * 40)
    with pytest.raises(BadInputError) as info:
        read_header(garbage)
    assert info.value.reason.startswith("unreadable NIfTI: ")
    assert info.value.path == str(garbage)


def test_non_nifti_image_rejected(tmp_path):
    path = tmp_path / "img.mgz"
    nib.save(nib.MGHImage(np.zeros(SHAPE, np.float32), LAS), path)
    with pytest.raises(BadInputError) as info:
        read_header(path)
    assert info.value.reason == "not a single-file NIfTI-1/2 image: nibabel read it as MGHImage"


def test_bad_limits_are_a_config_error():
    with pytest.raises(ValueError):
        HeaderLimits(voxel_mm=(4.0, 0.3), shape=(8, 512), sform_qform_tolerance_mm=1.0)
    with pytest.raises(ValueError):
        HeaderLimits(voxel_mm=(0.3, 4.0), shape=(0, 512), sform_qform_tolerance_mm=1.0)
    with pytest.raises(ValueError):
        HeaderLimits(voxel_mm=(0.3, 4.0), shape=(8, 512), sform_qform_tolerance_mm=-1.0)


def test_t2w_and_flair_have_limits_of_their_own_that_accept_thick_slices(tmp_path):
    """The schema's preprocess.header has a kind per structural suffix: a 2D FLAIR or TSE
    T2w (0.9 x 0.9 x 5 mm, 24 slices) is plausible for them and not for a T1w."""
    from mmssl.preprocess.settings import MriSettings

    limits = MriSettings.from_config({}).header
    assert set(limits) == {"T1w", "T2w", "FLAIR", "bold"}
    affine = np.diag([-0.9, 0.9, 5.0, 1.0])
    path = _write(tmp_path, sform=affine, qform=affine, shape=(256, 256, 24))
    for suffix in ("T2w", "FLAIR"):
        assert check_header(read_header(path), path, limits[suffix])["header_affine_source"] == "sform"
    with pytest.raises(BadInputError, match="voxel size"):
        check_header(read_header(path), path, limits["T1w"])
    assert MriSettings.from_config({"header": {"FLAIR": {"voxel_mm": [0.5, 3.0]}}}).header["FLAIR"].voxel_mm == (0.5, 3.0)


@pytest.mark.filterwarnings("ignore:.*no sidecar RepetitionTime")
@pytest.mark.parametrize("case", ["missing", "zero_byte", "garbage", "truncated"])
def test_every_input_reader_gives_the_same_reason(tmp_path, case):
    """One reader opens every input NIfTI: the structural loader (volumes.load_volume) and
    the BOLD reader (falff) name the same defect with the same reason as read_header."""
    from mmssl.preprocess.falff import falff_file
    from mmssl.preprocess.volumes import load_volume

    path = tmp_path / "img.nii.gz"
    if case == "zero_byte":
        path.write_bytes(b"")
    elif case == "garbage":
        path.write_bytes(b"not a nifti" * 40)
    elif case == "truncated":
        nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(8, 8, 8, 120)).astype(np.float32), np.eye(4)),
                 str(path))
        path.write_bytes(path.read_bytes()[:4000])
    expected = {"missing": "file not found", "zero_byte": "empty file (0 bytes)",
                "garbage": "unreadable NIfTI: ", "truncated": "corrupt NIfTI data: "}[case]
    reasons = []
    for read in (load_volume, lambda p: falff_file(p, None, *(tmp_path / f"o{i}.nii.gz" for i in range(3)))):
        with pytest.raises(BadInputError) as info:
            read(path)
        assert info.value.path == str(path)
        reasons.append(info.value.reason)
    assert all(r.startswith(expected) for r in reasons), reasons
