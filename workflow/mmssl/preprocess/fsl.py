"""The FSL installation check of the optional ``fsl`` backend (FSL from FSL's conda
channel, driven through fslpy). Its own module so that registration, masking and motion
correction can all ask for FSL without importing one another."""

from __future__ import annotations

import os
from pathlib import Path


class FslNotFoundError(RuntimeError):
    """The ``fsl`` backend was asked for but no FSL installation was found."""


FSL_TOOLS = ("bet", "robustfov", "flirt")


def require_fsl(tools: tuple[str, ...] = FSL_TOOLS) -> Path:
    """Return ``$FSLDIR``; raise :class:`FslNotFoundError` naming FSLDIR when FSL, one of
    ``tools`` (executables under ``$FSLDIR/bin``) or fslpy is missing."""
    fsldir = os.environ.get("FSLDIR", "")
    if not fsldir:
        raise FslNotFoundError(
            "preprocess.backend is 'fsl' but the FSLDIR environment variable is not set; install FSL "
            "(https://fsl.fmrib.ox.ac.uk) and set FSLDIR, or use preprocess.backend: python"
        )
    missing = [tool for tool in tools if not (Path(fsldir) / "bin" / tool).is_file()]
    if missing:
        raise FslNotFoundError(f"FSLDIR={fsldir} has no bin/{', bin/'.join(missing)}; is FSLDIR the root of an FSL installation?")
    try:
        import fsl.wrappers  # noqa: F401  (fslpy: the Python side of the FSL backend)
    except ImportError as err:
        raise FslNotFoundError("preprocess.backend is 'fsl' but fslpy is not installed: pip install -e '.[fsl]'") from err
    return Path(fsldir)
