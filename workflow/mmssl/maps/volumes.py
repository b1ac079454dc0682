"""The maps' voxel grid and NIfTI files.

The packed store's volumes have no affine of their own: they lie on the MNI grid they were
made on, which the rule passes in (``--grid-json``): a ``bids_mri`` dataset's
``preprocess.grid`` (voxel_mm, size), or for ``synthetic_mri`` 192 mm / size voxels (32 x
6 mm or 64 x 3 mm, as :mod:`mmssl.data.known_mri` generates them). The store's array axes
(i, j, k) are the grid's voxel axes, so a map is written with the grid's affine as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from mmssl.preprocess.spatial import Grid, GridSettings, mni_grid
from mmssl.preprocess.volumes import save_nifti


def map_grid(grid: dict[str, Any], shape: tuple[int, ...]) -> Grid:
    """The MNI grid ``grid`` ({voxel_mm, size}) of volumes of spatial ``shape``; an error when
    they disagree (the store was made on another grid) or the volumes are not 3D."""
    if len(shape) != 3:
        raise ValueError(f"brain maps need 3D volumes; the source's volumes are {len(shape)}D {tuple(shape)}")
    settings = GridSettings(voxel_mm=float(grid["voxel_mm"]), size=int(grid["size"]))
    out = mni_grid(settings)
    if tuple(shape) != out.shape:
        raise ValueError(f"the store's volumes are {tuple(shape)} but the grid {grid} is {out.shape}: the maps would "
                         "be placed wrongly in MNI space")
    return out


def save_map(volume: np.ndarray, grid: Grid, path: str | Path, description: str = "") -> Path:
    """Write ``volume`` (X, Y, Z) float as NIfTI on ``grid`` (atomically; NaN where it has no
    value). ``description``: the header's descrip field (80 characters at most)."""
    if volume.shape != grid.shape:
        raise ValueError(f"map of shape {volume.shape} on a grid of shape {grid.shape}")
    return save_nifti(nib.Nifti1Image(np.asarray(volume, np.float32), grid.affine), path, description=description)


def sidecar_path(nifti: str | Path) -> Path:
    """``x.nii.gz`` -> ``x.json`` (BIDS sidecar)."""
    nifti = Path(nifti)
    return nifti.with_name(nifti.name.removesuffix(".gz").removesuffix(".nii") + ".json")


def brain_support(volumes: np.ndarray) -> np.ndarray:
    """(n, C, *S) volumes -> (*S) bool: voxels nonzero in some volume (the stored volumes are
    zero outside the brain mask)."""
    return np.abs(np.asarray(volumes, dtype=np.float32)).sum((0, 1)) > 0


def json_ready(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with numpy scalars made plain and NaN made null (JSON has no NaN)."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not np.isfinite(v):
            return None
        return v

    return json.loads(json.dumps(plain(info)))
