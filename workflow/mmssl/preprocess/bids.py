"""Find structural images (T1w, T2w, FLAIR) and resting-state BOLD runs in a BIDS tree
from file names alone.

No image or sidecar is opened, so a tree of zero-byte files (a dry-run fixture, or a
``snakemake -n`` over a dataset still being downloaded) is discovered exactly like the
real one. pybids is not used: it indexes every file into an SQL database and reads every
JSON sidecar up front (seconds to minutes on OASIS-3's ~2,000 sessions, and it fails on
zero-byte JSON); the few BIDS rules needed here (entity parsing, the subject/session
folder layout, sidecar inheritance) are a few dozen lines of pathlib.

Layouts handled: ``sub-*/ses-*/{anat,func}/`` and ``sub-*/{anat,func}/`` (no sessions),
any session label (``ses-d0129``, ``ses-M000``, ...), several runs, ``.nii`` or ``.nii.gz``,
``dataset_description.json`` anywhere (it is not needed for discovery).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmssl.paths import BOLD, DATATYPE

SCAN_COLUMNS = ("subject", "session", "modality", "run", "acq", "task", "key", "path", "sidecar", "days")
EXCLUDED_COLUMNS = ("subject", "session", "path", "reason")

# (regex on the session label, days per unit). OASIS-3 labels are days since entry
# (``d0129``); Clinica-converted trees use months since baseline (``M006``), converted
# with the mean month length, so those days are approximate (to about +-1.5 days).
DEFAULT_SESSION_DAY_PATTERNS: tuple[tuple[str, float], ...] = ((r"^d(\d+)$", 1.0), (r"^M(\d+)$", 365.25 / 12))

_ENTITY = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9]+)$")
_NIFTI_EXTENSIONS = (".nii.gz", ".nii")


@dataclass
class DiscoveryResult:
    """scans: one row per usable run, columns ``SCAN_COLUMNS``; excluded: ``EXCLUDED_COLUMNS``."""

    scans: pd.DataFrame
    excluded: pd.DataFrame


@dataclass(frozen=True)
class BidsName:
    """A parsed BIDS file name: ordered entities (without ``sub``), suffix and extension."""

    subject: str
    entities: tuple[tuple[str, str], ...]
    suffix: str
    extension: str

    def get(self, entity: str, default: str = "") -> str:
        return dict(self.entities).get(entity, default)


def parse_bids_name(name: str) -> BidsName | None:
    """Parse ``sub-01_ses-A_task-rest_run-01_bold.nii.gz``; None if it is not a BIDS name.

    The suffix is the last ``_``-separated part before the extension; every other part
    must be ``key-value`` with an alphanumeric value, the first being ``sub``.
    """
    extension = next((e for e in (*_NIFTI_EXTENSIONS, ".json") if name.endswith(e)), None)
    if extension is None:
        return None
    parts = name[: -len(extension)].split("_")
    if len(parts) < 2:
        return None
    pairs = [_ENTITY.match(p) for p in parts[:-1]]
    if any(m is None for m in pairs) or pairs[0].group(1) != "sub":  # type: ignore[union-attr]
        return None
    entities = tuple((m.group(1), m.group(2)) for m in pairs[1:])  # type: ignore[union-attr]
    return BidsName(subject=pairs[0].group(2), entities=entities, suffix=parts[-1], extension=extension)  # type: ignore[union-attr]


def session_days(session: str, patterns: Sequence[tuple[str, float]] = DEFAULT_SESSION_DAY_PATTERNS) -> float:
    """Days since entry parsed from a session label (``d0129`` -> 129.0); NaN if no pattern fits."""
    for pattern, days_per_unit in patterns:
        m = re.match(pattern, session)
        if m:
            return float(m.group(1)) * days_per_unit
    return math.nan


def find_sidecar(nifti: Path, bids_dir: Path) -> Path | None:
    """The JSON sidecar that applies to ``nifti`` under the BIDS inheritance principle.

    Candidates are ``*.json`` files with the same suffix whose entities are a subset of the
    image's, in the image's folder, then its session, subject and dataset folders; the
    nearest folder wins, and within one folder the candidate with the most entities.
    Keys are not merged across levels: the single nearest file is returned (a simplification
    of BIDS, which merges; TR normally lives in the file beside the image).
    """
    image = parse_bids_name(nifti.name)
    if image is None:
        return None
    wanted = set(image.entities) | {("sub", image.subject)}
    folder = nifti.parent
    bids_dir = bids_dir.resolve()
    while True:
        best: tuple[int, Path] | None = None
        for candidate in sorted(folder.glob(f"*{image.suffix}.json")):
            parsed = _parse_sidecar_name(candidate.name, image.suffix)
            if parsed is not None and parsed <= wanted and (best is None or len(parsed) > best[0]):
                best = (len(parsed), candidate)
        if best is not None:
            return best[1]
        if folder.resolve() == bids_dir or folder.parent == folder:
            return None
        folder = folder.parent


def _parse_sidecar_name(name: str, suffix: str) -> set[tuple[str, str]] | None:
    """Entities of a sidecar name such as ``task-rest_bold.json`` (top-level files have no ``sub``)."""
    stem = name[: -len(".json")]
    parts = stem.split("_")
    if parts[-1] != suffix:
        return None
    found = [_ENTITY.match(p) for p in parts[:-1]]
    if any(m is None for m in found):
        return None
    return {(m.group(1), m.group(2)) for m in found}  # type: ignore[union-attr]


def discover(
    bids_dir: str | Path,
    modalities: Sequence[str],
    bold_task: str | None = "rest",
    session_day_patterns: Sequence[tuple[str, float]] = DEFAULT_SESSION_DAY_PATTERNS,
) -> DiscoveryResult:
    """List the runs of the raw ``modalities`` (BIDS suffixes among T1w, T2w, FLAIR, bold:
    :func:`mmssl.paths.raw_modalities` of the configured sources) of every subject. A
    subject with a run of some of them is kept whatever it lacks; one with none goes to
    ``excluded`` (with every file of it that was set aside, and why).

    bold_task: keep only ``task-<bold_task>`` BOLD runs (None keeps every task).
    Raises FileNotFoundError if ``bids_dir`` is missing and ValueError if it has no ``sub-*``
    folder or a modality is not one of the suffixes above.
    """
    bids_dir = Path(bids_dir)
    unknown = [m for m in modalities if m not in DATATYPE]
    if unknown or not modalities:
        raise ValueError(f"discover: modalities {list(modalities)}: expected one or more of {', '.join(DATATYPE)}")
    if not bids_dir.is_dir():
        raise FileNotFoundError(f"BIDS directory {bids_dir} does not exist (config key bids_dir)")
    subject_dirs = sorted(p for p in bids_dir.glob("sub-*") if p.is_dir())
    if not subject_dirs:
        raise ValueError(f"BIDS directory {bids_dir} contains no sub-* folders; is bids_dir the dataset root?")
    rows: list[dict] = []
    excluded: list[dict] = []
    for subject_dir in subject_dirs:
        scans, dropped = _subject_scans(subject_dir, bids_dir, modalities, bold_task, session_day_patterns)
        excluded += dropped
        if not scans:
            excluded.append(_exclusion(subject_dir.name[len("sub-"):], "", subject_dir,
                                       f"no usable scan: {_missing_reason(modalities, bold_task)}"))
        rows += scans
    scans_df = pd.DataFrame(rows, columns=list(SCAN_COLUMNS))
    scans_df = scans_df.sort_values(["subject", "session", "modality", "key"], kind="stable").reset_index(drop=True)
    return DiscoveryResult(scans=scans_df, excluded=pd.DataFrame(excluded, columns=list(EXCLUDED_COLUMNS)))


def _missing_reason(missing: Sequence[str], bold_task: str | None) -> str:
    """``no T1w run and no BOLD run (task-rest)`` for the raw suffixes ``missing``."""
    bold = "BOLD run" if bold_task is None else f"BOLD run (task-{bold_task})"
    return "no " + " and no ".join(bold if m == BOLD else f"{m} run" for m in missing)


def _subject_scans(
    subject_dir: Path, bids_dir: Path, modalities: Sequence[str], bold_task: str | None,
    patterns: Sequence[tuple[str, float]],
) -> tuple[list[dict], list[dict]]:
    """Scan rows of one subject, and exclusions of files that look like inputs but cannot be used."""
    subject = subject_dir.name[len("sub-"):]
    session_dirs = sorted(p for p in subject_dir.glob("ses-*") if p.is_dir()) or [subject_dir]
    rows: list[dict] = []
    excluded: list[dict] = []
    seen: dict[tuple[str, str], Path] = {}
    for session_dir in session_dirs:
        session = session_dir.name[len("ses-"):] if session_dir is not subject_dir else ""
        for modality in modalities:
            for path in sorted((session_dir / DATATYPE[modality]).glob(f"sub-*_{modality}.nii*")):
                row, reason = _scan_row(path, subject, session, modality, bids_dir, bold_task, patterns)
                if reason is None and (modality, row["key"]) in seen:
                    reason = f"duplicate of {seen[(modality, row['key'])].name} (same entities, other extension)"
                if reason is not None:
                    excluded.append(_exclusion(subject, session, path, reason))
                    continue
                seen[(modality, row["key"])] = path
                rows.append(row)
    return rows, excluded


def _scan_row(
    path: Path, subject: str, session: str, modality: str, bids_dir: Path, bold_task: str | None,
    patterns: Sequence[tuple[str, float]],
) -> tuple[dict, str | None]:
    """One scan row from a file name, or the reason the file cannot be used."""
    name = parse_bids_name(path.name)
    if name is None or name.extension not in _NIFTI_EXTENSIONS:
        return {}, "file name is not a BIDS NIfTI name (sub-<label>[_<key>-<value>...]_<suffix>.nii[.gz])"
    if name.subject != subject or name.get("ses") != session:
        return {}, f"file name entities (sub-{name.subject}, ses-{name.get('ses') or 'none'}) disagree with its folder"
    task = name.get("task")
    if modality == BOLD and bold_task is not None and task != bold_task:
        return {}, f"BOLD task-{task or 'none'} is not the resting-state task-{bold_task}"
    sidecar = find_sidecar(path, bids_dir)
    row = {
        "subject": subject,
        "session": session,
        "modality": modality,
        "run": name.get("run"),
        "acq": name.get("acq"),
        "task": task,
        "key": scan_key(name, drop_task=bold_task is not None),
        "path": str(path),
        "sidecar": str(sidecar) if sidecar is not None else "",
        "days": session_days(session, patterns),
    }
    return row, None


def scan_key(name: BidsName, drop_task: bool = True) -> str:
    """Entities that identify a run within its subject and modality, e.g. ``ses-d0129_run-01``;
    used in sample ids."""
    parts = [f"{k}-{v}" for k, v in name.entities if not (drop_task and k == "task")]
    return "_".join(parts) or name.suffix


def exclusion_row(path: str | Path, reason: str) -> dict:
    """An excluded.tsv row for one file, subject and session read from its BIDS name ("" if not one)."""
    name = parse_bids_name(Path(path).name)
    return _exclusion(name.subject if name else "", name.get("ses") if name else "", path, reason)


def _exclusion(subject: str, session: str, path: str | Path, reason: str) -> dict:
    return {"subject": subject, "session": session, "path": str(path), "reason": reason}
