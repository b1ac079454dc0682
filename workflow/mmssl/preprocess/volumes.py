"""Reading input volumes (every failure named, as BadInputError, with its file) and writing
the preprocessing outputs atomically (see :mod:`mmssl.io`)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from mmssl.io import atomic_path
from mmssl.errors import BadInputError
from mmssl.preprocess.header import read_data, read_header
from mmssl.preprocess.registration import save_transform


def load_volume(path: str | Path) -> nib.Nifti1Image:
    """A 3D image (a trailing axis of length 1 is dropped) as float32; anything unusable
    (missing, unreadable, not 3D, non-finite, constant) raises BadInputError naming it."""
    img = read_header(path)
    data = read_data(img, path)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise BadInputError(path, f"expected a 3D image, got shape {data.shape}")
    bad = int((~np.isfinite(data)).sum())
    if bad:
        raise BadInputError(path, f"{bad} NaN or inf values")
    if data.max() == data.min():
        raise BadInputError(path, f"image is constant ({data.max():g})")
    if abs(np.linalg.det(img.affine[:3, :3])) < 1e-6:
        raise BadInputError(path, "singular affine (zero voxel size?)")
    return nib.Nifti1Image(data, img.affine)


def load_map(path: str) -> nib.Nifti1Image:
    """A fALFF map may legitimately be 0 almost everywhere; only readability and finiteness matter."""
    try:
        return load_volume(path)
    except BadInputError as error:
        if "constant" in error.reason:
            raise BadInputError(path, "fALFF map is constant (empty EPI mask?)") from error
        raise


def load_mask(path: str) -> nib.Nifti1Image:
    img = load_volume(path)
    return nib.Nifti1Image((np.asarray(img.dataobj) > 0).astype(np.uint8), img.affine)


def save_nifti(img: nib.Nifti1Image, path: str | Path, dtype: type = np.float32, description: str = "") -> Path:
    """``img``'s data as ``dtype`` with its affine (units mm), written atomically;
    ``description`` goes into the header's descrip field (79 ASCII characters at most)."""
    out = nib.Nifti1Image(np.asarray(img.dataobj).astype(dtype), img.affine)
    out.header.set_xyzt_units("mm")
    if description:
        out.header["descrip"] = description[:79].encode("ascii", "replace")
    with atomic_path(path) as tmp:
        nib.save(out, str(tmp))
    return Path(path)


def save_xfm(matrix: np.ndarray, path: str | Path) -> Path:
    """A 4x4 template->native RAS matrix (see :func:`mmssl.preprocess.registration.save_transform`)."""
    with atomic_path(path) as tmp:
        save_transform(matrix, tmp)
    return Path(path)


def write_placeholders(paths: list[str | Path]) -> None:
    """Empty (0-byte) files in place of the image outputs of an excluded scan: the rule
    declares them, so they must exist, and an empty file cannot pass for a finished image
    (nibabel refuses to read it). The scan's status file gives the reason."""
    for path in paths:
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"")
