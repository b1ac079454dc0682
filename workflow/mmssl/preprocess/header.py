"""Header validation of input NIfTI images (native T1w, 4D BOLD) before anything uses them.

The counterpart of fMRIPrep's "validation" step (niworkflows ``ValidateImage``), but stricter
where a wrong header would silently corrupt the result rather than crash:

* a non-finite affine would otherwise end in a traceback deep inside nibabel (``set_qform``
  cannot decompose a NaN matrix) when the first derived image is written;
* sform and qform of opposite handedness mean one of them is left-right flipped, and nibabel
  silently uses the sform: which hemisphere is which cannot be decided from the file, so the
  image is excluded rather than guessed;
* sform and qform of the same handedness that still disagree are usually a stale qform
  (an edited sform); the sform is used, as nibabel does, and the disagreement is reported in
  QC fields so it can be reviewed instead of excluding the subject.

Only the header is read: nibabel loads the voxel data lazily and nothing here touches
``img.dataobj``, so the check is cheap and also works on a file whose data block is truncated
(that is reported later by the step that reads the data).

``BadInputError(path, reason)`` means "exclude this input, listing the reason"; any other
exception is a bug (or, for ``HeaderLimits``, a bad configuration) and fails the job.
"""

from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
from nibabel import quaternions
import numpy as np

from mmssl.errors import BadInputError

# |det| of the 3x3 part (mm^3 per voxel) below which the affine cannot be inverted reliably.
# Real voxels are >= ~0.1 mm^3 (0.5 mm isotropic is 0.125), so 1e-6 only catches a zero or
# degenerate voxel axis, never a fine but valid grid.
SINGULAR_DET_MM3 = 1e-6

# Shift and angle are reported rounded (readable QC table). Note that a qform is stored as a
# float32 quaternion: written from the very same matrix as the sform it can still differ by up
# to ~0.07 mm / 0.013 deg for an oblique 1 mm LAS image (see _qform), so the tolerance should
# be well above that (>= 0.5 mm); an axis-aligned image gives exactly 0.
SHIFT_DECIMALS = 3  # mm
ANGLE_DECIMALS = 3  # degrees
# Voxel sizes are compared after rounding to 1e-4 mm, so a float32 header value such as
# 4.0000002 mm is not excluded by a limit of 4 mm.
VOXEL_DECIMALS = 4

QC_FIELDS = (
    "header_sform_code",
    "header_qform_code",
    "header_affine_source",
    "header_sform_qform_shift_mm",
    "header_sform_qform_angle_deg",
    "header_sform_qform_disagree",
)

# The header fields each transform is built from (pixdim[0] is qfac, the qform's handedness).
_SFORM_FIELDS = ("srow_x", "srow_y", "srow_z")
_QFORM_FIELDS = ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z")


@dataclass(frozen=True)
class HeaderLimits:
    """Plausible ranges for one kind of image (no defaults here: they come from the config schema).

    voxel_mm: (min, max) spatial voxel size in mm, applied to each of the 3 axes (the column
        norms of the affine nibabel uses, i.e. the real sampling distance, not pixdim alone).
    shape: (min, max) number of voxels along each of the 3 spatial axes (dims 1-3; a 4th,
        time axis is not limited).
    sform_qform_tolerance_mm: largest displacement (mm) between where the sform and where the
        qform put any of the 8 corner voxels of the image before they count as disagreeing.
    """

    voxel_mm: tuple[float, float]
    shape: tuple[int, int]
    sform_qform_tolerance_mm: float

    def __post_init__(self) -> None:
        # A wrong limit is a configuration error, not a bad input: ValueError, not BadInputError.
        (v_lo, v_hi), (s_lo, s_hi) = self.voxel_mm, self.shape
        if not (0 < v_lo <= v_hi and math.isfinite(v_hi)):
            raise ValueError(f"voxel_mm must be 0 < min <= max (finite), got {self.voxel_mm}")
        if not (1 <= s_lo <= s_hi):
            raise ValueError(f"shape must be 1 <= min <= max, got {self.shape}")
        if not (self.sform_qform_tolerance_mm >= 0 and math.isfinite(self.sform_qform_tolerance_mm)):
            raise ValueError(f"sform_qform_tolerance_mm must be finite and >= 0, got {self.sform_qform_tolerance_mm}")


def read_header(path: str | Path) -> nib.Nifti1Image:
    """Load ``path`` with nibabel without reading the voxel data (nibabel's proxy is lazy).

    Returns the image (Nifti1Image, or its subclass Nifti2Image). Raises BadInputError(path,
    reason) for a missing file ('file not found'), a zero-byte file ('empty file (0 bytes)'),
    anything nib.load rejects (garbage, an unreadable header: 'unreadable NIfTI: <error type>:
    <message>'), and an image that is not a single-file NIfTI-1/2 (e.g. MGH, or an
    Analyze/NIfTI .hdr/.img pair). The one way the package opens an input NIfTI: the voxel
    data then comes from :func:`read_data`.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "file not found")
    # nibabel's message for a 0-byte file depends on the suffix (an unknown file type, or an
    # EOFError from gzip); a truncated download or a failed copy deserves a clear reason.
    if path.stat().st_size == 0:
        raise BadInputError(path, "empty file (0 bytes)")
    try:
        image = nib.load(str(path))
    except Exception as error:  # ImageFileError, FileNotFoundError, HeaderDataError, EOFError, zlib.error, ValueError, ...
        raise BadInputError(path, f"unreadable NIfTI: {type(error).__name__}: {error}") from error
    if not isinstance(image, nib.Nifti1Image):
        raise BadInputError(path, f"not a single-file NIfTI-1/2 image: nibabel read it as {type(image).__name__}")
    return image


def read_data(image: nib.Nifti1Image, path: str | Path) -> np.ndarray:
    """The voxel data of an image from :func:`read_header`, as float32 (shape as stored);
    a truncated or corrupt data block becomes BadInputError naming ``path``."""
    try:
        return np.asarray(image.dataobj, dtype=np.float32)
    except (OSError, EOFError, ValueError, zlib.error) as error:  # gzip, short reads, bad scaling
        raise BadInputError(path, f"corrupt NIfTI data: {type(error).__name__}: {error}") from error


def check_header(img: nib.Nifti1Image | nib.Nifti2Image, path: str | Path, limits: HeaderLimits) -> dict[str, float | int | str]:
    """Validate the header of ``img`` (read from ``path``) against ``limits``; never reads voxel data.

    img: a NIfTI-1/2 image of spatial shape (X, Y, Z) or (X, Y, Z, T); only the header and the
        shape are used, so a file whose data block is truncated still passes.
    path: named in every BadInputError.

    Raises BadInputError(path, reason), in this order of checks, for:
      - a non-finite transform: NaN/inf in srow_x/y/z when sform_code > 0, in the quaternion,
        offsets or pixdim[0:4] when qform_code > 0, or anywhere in ``img.affine``;
      - neither sform nor qform set (both codes 0): the orientation is unknown;
      - an invalid qform (a quaternion or pixdim nibabel cannot turn into a matrix);
      - a singular transform: |det| of a set transform's 3x3 part below SINGULAR_DET_MM3;
      - sform and qform both set and of opposite handedness (possible left-right flip);
      - a voxel size of the used transform outside ``limits.voxel_mm`` on any axis;
      - a spatial dimension (dims 1-3) outside ``limits.shape``.

    Returns the QC fields (keys QC_FIELDS), which the caller adds to its QC table:
      header_sform_code, header_qform_code: int, the codes in the header;
      header_affine_source: 'sform' or 'qform', the transform nibabel's ``img.affine`` uses
        (the sform whenever sform_code > 0);
      header_sform_qform_shift_mm: float, the largest distance (mm) between the sform's and the
        qform's position of the 8 corner voxels, 0.0 when only one of them is set;
      header_sform_qform_angle_deg: float, the rotation angle (degrees) between the two
        transforms' rotation parts (voxel sizes and shears removed), 0.0 when only one is set;
      header_sform_qform_disagree: 1 when the shift exceeds ``limits.sform_qform_tolerance_mm``
        (the image is still used, with the sform; the caller flags it), else 0.
    """
    header = img.header
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    _check_finite(img, path, sform_code, qform_code)
    if sform_code <= 0 and qform_code <= 0:
        # nibabel would fall back to a pixdim-only affine with a guessed (radiological) x axis:
        # left and right cannot be told apart, so the image is not used.
        raise BadInputError(path, "neither sform nor qform is set (sform_code and qform_code are 0): orientation unknown")
    sform = header.get_sform() if sform_code > 0 else None
    qform = _qform(header, path) if qform_code > 0 else None
    for name, affine in (("sform", sform), ("qform", qform)):
        if affine is not None:
            _check_not_singular(affine, name, path)
    if sform is not None and qform is not None and np.sign(np.linalg.det(sform[:3, :3])) != np.sign(np.linalg.det(qform[:3, :3])):
        # Opposite determinants: one transform mirrors the other. Most often the x axis, so the
        # hemispheres would be swapped depending on which one a tool trusts.
        raise BadInputError(path, "sform and qform disagree in handedness (possible left-right flip): "
                                  f"sform is {_axcodes(sform)}, qform is {_axcodes(qform)}")
    # nibabel's img.affine is the sform when sform_code > 0, else the qform (get_best_affine).
    source, used = ("sform", sform) if sform is not None else ("qform", qform)
    _check_voxel_size(used, path, limits)
    spatial = _spatial_shape(img)
    _check_shape(spatial, path, limits)
    shift, angle = (0.0, 0.0) if sform is None or qform is None else _disagreement(sform, qform, spatial)
    return {
        "header_sform_code": sform_code,
        "header_qform_code": qform_code,
        "header_affine_source": source,
        "header_sform_qform_shift_mm": shift,
        "header_sform_qform_angle_deg": angle,
        "header_sform_qform_disagree": int(shift > limits.sform_qform_tolerance_mm),
    }


def _check_finite(img: nib.Nifti1Image, path: str | Path, sform_code: int, qform_code: int) -> None:
    """BadInputError naming the first non-finite header field of each set transform, then img.affine.

    Checked on the raw fields before any matrix is built: nibabel's quaternion and SVD code
    would otherwise warn, raise LinAlgError, or silently propagate NaN.
    """
    header = img.header
    if sform_code > 0:
        rows = np.stack([np.asarray(header[name], dtype=np.float64) for name in _SFORM_FIELDS])  # (3, 4)
        bad = [f"{_SFORM_FIELDS[i]}[{j}]={rows[i, j]}" for i, j in zip(*np.nonzero(~np.isfinite(rows)))]
        if bad:
            raise BadInputError(path, f"non-finite sform (sform_code {sform_code}): {', '.join(bad)}")
    if qform_code > 0:
        values = {name: float(header[name]) for name in _QFORM_FIELDS}
        values |= {f"pixdim[{i}]": float(header["pixdim"][i]) for i in range(4)}
        bad = [f"{name}={value}" for name, value in values.items() if not math.isfinite(value)]
        if bad:
            raise BadInputError(path, f"non-finite qform (qform_code {qform_code}): {', '.join(bad)}")
    affine = img.affine  # (4, 4), or None for an in-memory image built without one
    if affine is not None and not np.isfinite(affine).all():
        raise BadInputError(path, f"non-finite affine: {int((~np.isfinite(affine)).sum())} NaN or inf entries")


def _qform(header: nib.Nifti1Header, path: str | Path) -> np.ndarray:
    """The (4, 4) qform from the quaternion, pixdim and offsets, taking b, c, d at face value.

    NIfTI stores only the quaternion's b, c, d (float32) and derives a = sqrt(1 - b^2 - c^2 - d^2).
    For a near-180 deg rotation (any LAS image: qfac flips z, so its rotation part is ~180 deg
    about y) a is close to 0, and nibabel's ``get_qform`` sets a = 0 whenever a^2 < 3.6e-7 (float32
    noise; niftilib does so below 1e-7). That alone turns an oblique 1 mm LAS T1w whose qform was
    written from the very sform into a 0.06 deg / 0.35 mm disagreement, which would be flagged.
    Using a = sqrt(max(a^2, 0)) in float64 leaves what the float32 storage costs: <= 0.013 deg,
    <= 0.07 mm over a 256 mm field of view. (img.affine is nibabel's own qform when the qform is
    used; the two differ by that much at most, and not at all in voxel size or handedness.)
    A quaternion/pixdim that gives no valid matrix -> BadInputError.
    """
    bcd = np.array([float(header[f"quatern_{c}"]) for c in "bcd"], dtype=np.float64)
    a_squared = 1.0 - float(bcd @ bcd)
    # b^2 + c^2 + d^2 may exceed 1 by float32 rounding (then a = 0), not by more: no rotation
    if a_squared < -abs(float(header.quaternion_threshold)):
        raise BadInputError(path, f"invalid qform: quaternion (b, c, d) = ({_fmt_list(bcd)}) is not a rotation "
                                  f"(b^2 + c^2 + d^2 = {1.0 - a_squared:.7g} > 1)")
    quaternion = np.concatenate([[math.sqrt(max(a_squared, 0.0))], bcd])
    pixdim = np.asarray(header["pixdim"], dtype=np.float64)
    zooms, qfac = pixdim[1:4].copy(), pixdim[0]
    if (zooms < 0).any():
        raise BadInputError(path, f"invalid qform: negative voxel size pixdim[1:4] = {_fmt(zooms)}")
    # nibabel's loader already fixes qfac 0 to 1 (the NIfTI convention for "unset")
    if qfac not in (-1.0, 1.0):
        raise BadInputError(path, f"invalid qform: qfac (pixdim[0]) must be 1 or -1, got {qfac:g}")
    zooms[2] *= qfac
    out = np.eye(4)
    out[:3, :3] = quaternions.quat2mat(quaternion) @ np.diag(zooms)
    out[:3, 3] = [float(header[f"qoffset_{c}"]) for c in "xyz"]
    return out


def _check_not_singular(affine: np.ndarray, name: str, path: str | Path) -> None:
    """BadInputError if the (4, 4) ``affine``'s 3x3 part cannot be inverted (zero voxel axis)."""
    det = float(np.linalg.det(affine[:3, :3]))
    if abs(det) < SINGULAR_DET_MM3:
        raise BadInputError(path, f"singular {name}: |det| of its 3x3 part is {abs(det):.3g} mm^3 "
                                  f"(voxel axes {_fmt(_voxel_sizes(affine))} mm)")


def _voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """(3,) voxel size in mm along each array axis: the norms of the (4, 4) affine's first 3 columns."""
    return np.round(np.linalg.norm(affine[:3, :3], axis=0), VOXEL_DECIMALS)


def _check_voxel_size(affine: np.ndarray, path: str | Path, limits: HeaderLimits) -> None:
    low, high = limits.voxel_mm
    sizes = _voxel_sizes(affine)
    if ((sizes < low) | (sizes > high)).any():
        raise BadInputError(path, f"voxel size {_fmt(sizes)} mm outside the allowed range [{low:g}, {high:g}] mm per axis")


def _spatial_shape(img: nib.Nifti1Image) -> tuple[int, int, int]:
    """(X, Y, Z) from the header's dims; a 2D image gets Z = 1 (so it fails a minimum > 1)."""
    return tuple(int(n) for n in (tuple(img.shape) + (1, 1, 1))[:3])  # type: ignore[return-value]


def _check_shape(spatial: tuple[int, int, int], path: str | Path, limits: HeaderLimits) -> None:
    low, high = limits.shape
    if any(n < low or n > high for n in spatial):
        raise BadInputError(path, f"spatial dimensions {_fmt(spatial)} voxels outside the allowed range [{low}, {high}] per axis")


def _disagreement(sform: np.ndarray, qform: np.ndarray, spatial: tuple[int, int, int]) -> tuple[float, float]:
    """(shift_mm, angle_deg) between two (4, 4) transforms of an image of shape ``spatial``.

    shift: the largest distance between the world positions the two give the 8 corner voxels
    (centres of voxels (0 or X-1, 0 or Y-1, 0 or Z-1)), i.e. how far apart the field of view
    lands; a rotation moves far corners more than the centre, so corners bound the whole image.
    angle: the angle of the rotation taking one orientation to the other, from the nearest
    rotation matrices (polar decomposition), so voxel size and shear do not count as rotation.
    """
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in spatial])), dtype=np.float64)  # (8, 3)
    in_sform = corners @ sform[:3, :3].T + sform[:3, 3]  # (8, 3) mm
    in_qform = corners @ qform[:3, :3].T + qform[:3, 3]
    shift = float(np.linalg.norm(in_sform - in_qform, axis=1).max())
    relative = _rotation(qform).T @ _rotation(sform)  # (3, 3), a proper rotation: same handedness is checked before
    # atan2 of sin and cos of the angle: accurate near 0 deg, where arccos((trace - 1) / 2) is not.
    sin = np.linalg.norm([relative[2, 1] - relative[1, 2], relative[0, 2] - relative[2, 0], relative[1, 0] - relative[0, 1]]) / 2
    cos = (np.trace(relative) - 1) / 2
    angle = math.degrees(math.atan2(sin, cos))
    # + 0.0 turns a rounded -0.0 into 0.0
    return round(shift, SHIFT_DECIMALS) + 0.0, round(angle, ANGLE_DECIMALS) + 0.0


def _rotation(affine: np.ndarray) -> np.ndarray:
    """The (3, 3) orthogonal matrix nearest the (4, 4) affine's 3x3 part (U @ Vt of its SVD)."""
    u, _, vt = np.linalg.svd(affine[:3, :3])
    return u @ vt


def _axcodes(affine: np.ndarray) -> str:
    """Orientation letters of a (4, 4) affine, e.g. 'LAS'."""
    return "".join(nib.aff2axcodes(affine))


def _fmt_list(values) -> str:
    """'0.1, -0.9, 0' for (0.1, -0.9, 0.0)."""
    return ", ".join(f"{float(v):g}" for v in values)


def _fmt(values) -> str:
    """'12 x 1 x 1' for (12.0, 1.0, 1.0)."""
    return " x ".join(f"{float(v):g}" for v in values)


def checked_header(path: str | Path, limits: HeaderLimits) -> dict[str, float | int | str]:
    """Read ``path``'s header and validate it (:func:`read_header`, :func:`check_header`):
    the QC fields, or BadInputError naming the file and what is wrong with it."""
    return check_header(read_header(path), path, limits)
