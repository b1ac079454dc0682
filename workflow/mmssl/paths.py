"""BIDS-derivatives file names: the one path builder of the rules and the package.

:func:`bids` is modelled on hippunfold's / snakebids' ``bids()``: keyword entities in,
``root/sub-X[/ses-Y]/datatype/sub-X[_ses-Y]_key-value_..._suffix.ext`` out. Any value may
be a Snakemake wildcard (``"{scan}"``), so the rules declare their outputs with the very
function that :mod:`mmssl.preprocess.collect` uses to find them again; the names cannot
drift apart.

The derivatives of one native scan are named after the scan: its own entities
(``sub-OAS30001_ses-d0129_run-01``, the *prefix*) followed by the derivative's, e.g.::

    sub-OAS30001/ses-d0129/anat/sub-OAS30001_ses-d0129_run-01_space-MNI152NLin2009aSym_res-3mm_desc-brain_T1w.nii.gz

:data:`DERIVATIVES` lists every file a preprocessing job writes, per datatype.
(``MNI152NLin2009aSym``: nilearn's bundled template, see :mod:`mmssl.preprocess.spatial`.)
"""

from __future__ import annotations

import os
from pathlib import Path

SPACE = "MNI152NLin2009aSym"


def _mni(desc: str, suffix: str) -> tuple[dict[str, str], str, str]:
    """A volume on the 3 mm MNI grid."""
    return {"space": SPACE, "res": "3mm", "desc": desc}, suffix, ".nii.gz"


def _xfm(source: str) -> tuple[dict[str, str], str, str]:
    """The template -> native transform of ``source`` (T1w or boldref)."""
    return {"from": source, "to": SPACE, "mode": "image"}, "xfm", ".txt"


def _native(desc: str, suffix: str, extension: str = ".nii.gz") -> tuple[dict[str, str], str, str]:
    """In the scan's own space: no space entity."""
    return {"desc": desc}, suffix, extension


# key -> (entities after the scan's own, suffix, extension). The keys are the rules' named
# outputs and the command-line flags (``--out-<key>``). QC JSON, and a status TSV (header
# only, or the reason the scan was excluded), for every scan.
DERIVATIVES: dict[str, dict[str, tuple[dict[str, str], str, str]]] = {
    "anat": {"T1w": _mni("brain", "T1w"), "mask": _mni("brain", "mask"), "xfm": _xfm("T1w"),
             "qc": ({"space": SPACE, "desc": "qc"}, "T1w", ".json"), "status": _native("status", "T1w", ".tsv")},
    "func": {"fALFF": _mni("falff", "boldmap"), "mask": _mni("falff", "mask"), "xfm": _xfm("boldref"),
             "qc": ({"space": SPACE, "desc": "qc"}, "bold", ".json"), "status": _native("status", "bold", ".tsv"),
             # native space: the fALFF map before registration, the EPI mask, the mean EPI it
             # was registered with, and per-volume confounds
             "falff_native": _native("falff", "boldmap"), "mask_native": _native("brain", "mask"),
             "boldref": _native("mean", "boldref"), "confounds": _native("confounds", "timeseries", ".tsv")},
}
# the raw suffix of each datatype's scans, and the datatype of each raw suffix
RAW_SUFFIX = {"anat": "T1w", "func": "bold"}
DATATYPE = {suffix: datatype for datatype, suffix in RAW_SUFFIX.items()}


def bids(
    root: str | Path = "",
    *,
    suffix: str,
    extension: str = "",
    datatype: str | None = None,
    subject: str | None = None,
    session: str | None = None,
    prefix: str | None = None,
    folder: str | None = None,
    **entities: str,
) -> str:
    """``root/<folder>/<datatype>/<name>``.

    name: ``prefix`` (default ``sub-<subject>[_ses-<session>]``), then ``_key-value`` for
    every entity in the order given (empty values skipped), then ``_<suffix><extension>``.
    folder: default ``sub-<subject>[/ses-<session>]``, or, given only a ``prefix``, the
    folders of the prefix's own ``sub``/``ses`` entities. Values may be wildcards.
    """
    if prefix is None:
        if subject is None:
            raise ValueError("bids(): give subject (and session) or prefix")
        prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    if folder is None:
        if subject is not None:
            folder = f"sub-{subject}" + (f"/ses-{session}" if session else "")
        else:
            heads = [part for part in prefix.split("_") if part.startswith(("sub-", "ses-"))]
            folder = "/".join(heads)
    name = "_".join([prefix, *(f"{key}-{value}" for key, value in entities.items() if value), suffix]) + extension
    # os.path, not pathlib: planning OASIS-3 builds ~10^5 of these names, and pathlib's
    # parsing was a quarter of that time
    return os.path.join(str(root), folder, datatype, name) if datatype else os.path.join(str(root), folder, name)


def scan_prefix(raw: str | Path) -> tuple[str, str]:
    """(datatype, prefix) of a raw BIDS scan: ``.../sub-X_ses-Y_run-01_T1w.nii.gz`` ->
    ``("anat", "sub-X_ses-Y_run-01")``; ValueError if it is not a T1w or bold NIfTI name."""
    name = Path(raw).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            stem, _, suffix = name[: -len(ext)].rpartition("_")
            if suffix in DATATYPE and stem.startswith("sub-"):
                return DATATYPE[suffix], stem
    raise ValueError(f"{raw}: not a BIDS T1w or bold NIfTI file name (sub-<label>[_<key>-<value>...]_<T1w|bold>.nii[.gz])")


def scan_derivatives(root: str | Path, datatype: str, prefix: str, folder: str | None = None) -> dict[str, str]:
    """Every derivative of one scan (keys of ``DERIVATIVES[datatype]``). With ``prefix`` and
    ``folder`` wildcards (``"{scan}"``, ``"{folder}"``) these are the rules' output patterns."""
    return {key: bids(root, datatype=datatype, prefix=prefix, folder=folder, suffix=suffix, extension=ext, **entities)
            for key, (entities, suffix, ext) in DERIVATIVES[datatype].items()}


def derivatives_of(root: str | Path, raw: str | Path) -> dict[str, str]:
    """The derivatives of the raw scan ``raw`` under ``root`` (see :func:`scan_derivatives`)."""
    datatype, prefix = scan_prefix(raw)
    return scan_derivatives(root, datatype, prefix)
