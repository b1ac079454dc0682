"""Head-motion correction of a BOLD run with FSL ``mcflirt`` (FSL backend only), and the
framewise displacement that QC reports.

``mcflirt -plots`` writes one row per volume: three rotations (radians, about x, y, z)
then three translations (mm). They are saved with fMRIPrep's confound column names in
``..._desc-confounds_timeseries.tsv`` beside the native fALFF map.

Framewise displacement is Power et al. (2012): the sum of the absolute volume-to-volume
changes of the six parameters, rotations turned into arc length on a 50 mm sphere. It
is three lines, so it is written here rather than pulling in a confound library.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from mmssl.errors import BadInputError
from mmssl.preprocess.fsl import require_fsl

MOTION_COLUMNS = ("rot_x", "rot_y", "rot_z", "trans_x", "trans_y", "trans_z")


def framewise_displacement(params: np.ndarray, radius_mm: float = 50.0) -> np.ndarray:
    """FD per volume (T,) in mm from (T, 6) mcflirt parameters [rad x3, mm x3]; FD[0] = 0."""
    params = np.asarray(params, dtype=np.float64)
    if params.ndim != 2 or params.shape[1] != 6:
        raise ValueError(f"motion parameters must be (volumes, 6), got shape {params.shape}")
    step = np.abs(np.diff(params, axis=0))
    fd = step[:, :3].sum(axis=1) * radius_mm + step[:, 3:].sum(axis=1)
    return np.concatenate([[0.0], fd])


def confounds_table(params: np.ndarray) -> pd.DataFrame:
    """(T, 6) parameters -> columns :data:`MOTION_COLUMNS` plus ``framewise_displacement``."""
    table = pd.DataFrame(np.asarray(params, dtype=np.float64), columns=list(MOTION_COLUMNS))
    table["framewise_displacement"] = framewise_displacement(params)
    return table


def motion_summary(params: np.ndarray, dummy_volumes: int) -> dict[str, float]:
    """Mean and max FD (mm) over the volumes fALFF uses (after ``dummy_volumes``)."""
    fd = framewise_displacement(np.asarray(params)[dummy_volumes:])
    return {"mean_fd": float(fd[1:].mean()) if fd.size > 1 else 0.0, "max_fd": float(fd.max())}


@contextmanager
def mcflirt_corrected(bold_path: str | Path) -> Iterator[tuple[Path, np.ndarray]]:
    """Run ``mcflirt -plots`` on a 4D BOLD run; yield (corrected NIfTI in a temporary
    folder, (T, 6) parameters). The folder is removed on exit. A missing FSL raises
    FslNotFoundError; output mcflirt did not write, or of the wrong shape, is BadInputError."""
    require_fsl(("mcflirt",))
    from fsl.wrappers import mcflirt

    work = Path(tempfile.mkdtemp(prefix="mmssl-mcflirt-"))
    try:
        base = work / "mc"
        mcflirt(str(bold_path), out=str(base), plots=True)
        corrected, par = work / "mc.nii.gz", work / "mc.par"
        if not corrected.is_file() or not par.is_file():
            raise BadInputError(bold_path, f"mcflirt wrote no {corrected.name} / {par.name}")
        params = np.loadtxt(par, ndmin=2)
        if params.shape[1] != 6:
            raise BadInputError(bold_path, f"mcflirt's {par.name} has {params.shape[1]} columns, expected 6")
        yield corrected, params
    finally:
        shutil.rmtree(work, ignore_errors=True)
