"""BIDS-derivatives file names: the one path builder of the rules and the package.

:func:`bids` is modelled on hippunfold's / snakebids' ``bids()``: keyword entities in,
``root/sub-X[/ses-Y]/datatype/sub-X[_ses-Y]_key-value_..._suffix.ext`` out. Any value may
be a Snakemake wildcard (``"{scan}"``), so the rules declare their outputs with the very
function that :mod:`mmssl.bids.collect` uses to find them again; the names cannot
drift apart.

The derivatives of one native scan are named after the scan: its own entities
(``sub-OAS30001_ses-d0129_run-01``, the *prefix*) followed by the derivative's, e.g.::

    sub-OAS30001/ses-d0129/anat/sub-OAS30001_ses-d0129_run-01_space-MNI152NLin2009aSym_res-3mm_desc-brain_T1w.nii.gz

:func:`derivative_specs` lists every file a preprocessing job writes, per raw suffix.
(``MNI152NLin2009aSym``: nilearn's bundled template, see :mod:`mmssl.preprocess.spatial`.)

Sources: the volumes a ``bids_mri`` dataset can train on (config key ``sources``). A
structural source is a raw BIDS suffix (``T1w``, ``T2w``, ``FLAIR``: one image, one
preprocessing job); a functional source is a map that the one job of a BOLD run derives
(``fALFF``, ``ALFF``). A *modality* is a raw BIDS suffix (T1w, bold), a *source* a
model input (T1w, fALFF); both come from the one table :data:`mmssl.modalities.MODALITIES`,
and :func:`mmssl.modalities.modality_of` names the modality a source comes from.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from mmssl.modalities import (MODALITIES, all_sources, functional_modalities, mask_desc, modalities_of, modality,
                              modality_of, sources_of, structural_modalities)

SPACE = "MNI152NLin2009aSym"
# Views of the one table of modalities (mmssl.modalities), for the rules and the package:
# the raw suffixes of structural scans, the maps of a BOLD run, every source, the raw suffix
# of BOLD runs, and the datatype of each raw suffix
STRUCTURAL = structural_modalities()
FUNCTIONAL = tuple(s for m in MODALITIES.values() if not m.structural for s in m.sources)
SOURCES = all_sources()
(BOLD,) = functional_modalities()


class _Datatypes(Mapping[str, str]):
    """raw suffix -> BIDS datatype, read from the table each time (so an entry added to
    mmssl.modalities.MODALITIES is known at once, to discovery too)."""

    def __getitem__(self, suffix: str) -> str:
        return MODALITIES[suffix].datatype

    def __iter__(self) -> Iterator[str]:
        return iter(list(MODALITIES))

    def __len__(self) -> int:
        return len(MODALITIES)

    def __repr__(self) -> str:
        return repr(dict(self))


DATATYPE: Mapping[str, str] = _Datatypes()

__all__ = ["BOLD", "DATATYPE", "FUNCTIONAL", "SOURCES", "SPACE", "STRUCTURAL", "ALFF_DERIVATIVES", "alff_wanted", "bids",
           "derivative_specs", "derivatives_of", "map_key", "modalities_of", "modality_of",
           "scan_derivatives", "scan_prefix", "sources_of", "wildcard_structural"]


def wildcard_structural(sources: Iterable[str]) -> list[str]:
    """The structural modalities ``sources`` use whose derivatives the wildcard patterns
    ``derivative_specs("{suffix}")`` name, in table order: the rules' ``{suffix}``
    constraint of the structural job."""
    used = set(sources)
    return [suffix for suffix in structural_modalities() if suffix in used]


def alff_wanted(sources: Iterable[str]) -> bool:
    """Whether a BOLD job must also write the optional maps (ALFF) because ``sources``
    include one of them."""
    optional = {s for m in MODALITIES.values() for s in m.optional_sources}
    return any(s in optional for s in sources)


def _mni(desc: str, suffix: str) -> tuple[dict[str, str], str, str]:
    """A volume on the 3 mm MNI grid."""
    return {"space": SPACE, "res": "3mm", "desc": desc}, suffix, ".nii.gz"


def _xfm(source: str) -> tuple[dict[str, str], str, str]:
    """The template -> native transform of ``source`` (a modality's ``xfm_source``: T1w,
    T2w, FLAIR or boldref)."""
    return {"from": source, "to": SPACE, "mode": "image"}, "xfm", ".txt"


def _native(desc: str, suffix: str, extension: str = ".nii.gz") -> tuple[dict[str, str], str, str]:
    """In the scan's own space: no space entity."""
    return {"desc": desc}, suffix, extension


def _anat(suffix: str, mask_desc: str, xfm_source: str) -> dict[str, tuple[dict[str, str], str, str]]:
    """One structural image's derivatives: its mask's ``desc`` and its transform's ``from``
    as its entry in mmssl.modalities says (``desc-brainT1w_mask``, ``desc-brainT2w_mask``:
    a T2w or FLAIR may have the very entities of a T1w of its session, so every structural
    mask names its suffix, and one rule with a ``{suffix}`` wildcard writes them all)."""
    return {"image": _mni("brain", suffix), "mask": _mni(mask_desc, "mask"), "xfm": _xfm(xfm_source),
            "qc": ({"space": SPACE, "desc": "qc"}, suffix, ".json"), "status": _native("status", suffix, ".tsv")}


# raw suffix -> key -> (entities after the scan's own, suffix, extension). The keys are the
# rules' named outputs and the command-line flags (``--out-<key>``). A QC JSON, and a
# status TSV (header only, or the reason the scan was excluded), for every scan.
_BOLD_DERIVATIVES = {
    "fALFF": _mni("falff", "boldmap"), "mask": _mni("falff", "mask"), "xfm": _xfm(modality(BOLD).xfm_source),
    "qc": ({"space": SPACE, "desc": "qc"}, BOLD, ".json"), "status": _native("status", BOLD, ".tsv"),
    # native space: the fALFF map before registration, the EPI mask, the mean EPI it was
    # registered with, and per-volume confounds
    "falff_native": _native("falff", "boldmap"), "mask_native": _native("brain", "mask"),
    "boldref": _native("mean", "boldref"), "confounds": _native("confounds", "timeseries", ".tsv"),
}
# written only when a dataset's sources include ALFF (the rule then declares them too)
ALFF_DERIVATIVES = {"ALFF": _mni("alff", "boldmap"), "alff_native": _native("alff", "boldmap")}


def derivative_specs(suffix: str, alff: bool = False) -> dict[str, tuple[dict[str, str], str, str]]:
    """key -> (entities, suffix, extension) of every file the job of one raw ``suffix``
    scan writes (a structural image: image, mask, xfm, qc, status; bold: fALFF, mask, xfm,
    qc, status and the native files, plus ALFF and alff_native when ``alff``). ``suffix``
    may be a Snakemake wildcard (``"{suffix}"``), which stands for any structural suffix."""
    if suffix.startswith("{") and suffix.endswith("}"):
        return _anat(suffix, mask_desc(suffix), suffix)
    if suffix not in MODALITIES:
        raise ValueError(f"no derivatives for raw suffix {suffix!r}; expected one of {', '.join(DATATYPE)}")
    entry = modality(suffix)
    if entry.structural:
        return _anat(suffix, entry.mask, entry.xfm_source)
    return {**_BOLD_DERIVATIVES, **(ALFF_DERIVATIVES if alff else {})}


def map_key(source: str) -> str:
    """The derivative key of ``source``'s volume on the MNI grid: ``image`` for a
    structural source, the map's own name (``fALFF``, ``ALFF``) for a BOLD one."""
    return "image" if modality_of(source).structural else source


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
    """(raw suffix, prefix) of a raw BIDS scan: ``.../sub-X_ses-Y_run-01_T1w.nii.gz`` ->
    ``("T1w", "sub-X_ses-Y_run-01")``; ValueError if its suffix is not a modality of
    mmssl.modalities (T1w, T2w, FLAIR, bold)."""
    name = Path(raw).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            stem, _, suffix = name[: -len(ext)].rpartition("_")
            if suffix in DATATYPE and stem.startswith("sub-"):
                return suffix, stem
    raise ValueError(f"{raw}: not a BIDS {', '.join(DATATYPE)} NIfTI file name "
                     f"(sub-<label>[_<key>-<value>...]_<{'|'.join(DATATYPE)}>.nii[.gz])")


def scan_derivatives(root: str | Path, suffix: str, prefix: str, folder: str | None = None,
                     alff: bool = False) -> dict[str, str]:
    """Every derivative of one scan of raw ``suffix`` (keys of :func:`derivative_specs`).
    With ``prefix``, ``folder`` and ``suffix`` wildcards (``"{scan}"``, ``"{folder}"``,
    ``"{suffix}"``) these are the rules' output patterns."""
    # a wildcard suffix stands for a structural one
    datatype = MODALITIES[suffix].datatype if suffix in MODALITIES else "anat"
    return {key: bids(root, datatype=datatype, prefix=prefix, folder=folder, suffix=sfx, extension=ext, **entities)
            for key, (entities, sfx, ext) in derivative_specs(suffix, alff).items()}


def derivatives_of(root: str | Path, raw: str | Path, alff: bool = False) -> dict[str, str]:
    """The derivatives of the raw scan ``raw`` under ``root`` (see :func:`scan_derivatives`)."""
    suffix, prefix = scan_prefix(raw)
    return scan_derivatives(root, suffix, prefix, alff=alff)
