"""Find structural images (T1w, T2w, FLAIR) and resting-state BOLD runs in any BIDS tree,
with their metadata merged by the BIDS inheritance principle, one scan per acquisition.

No image is opened, so a tree of zero-byte NIfTI files (a dry-run fixture, or a
``snakemake -n`` over a dataset still being downloaded) is discovered exactly like the real
one. JSON sidecars are read (a zero-byte one counts as ``{}``: a placeholder of such a tree).
pybids is the oracle of the tests (``tests/test_bids_examples.py``: entities and merged
metadata of every file used, on pybids' own example datasets), not the reader: its
``BIDSLayout`` indexes every file of the tree into a database (benchmarks/README.md,
"BIDS indexing", has the measured times); the few rules needed here are below.

Layouts handled: ``sub-*/ses-*/{anat,func}/`` and ``sub-*/{anat,func}/`` (no sessions),
any session label, several runs, ``.nii`` or ``.nii.gz``, sidecars at any level.

What becomes a scan, in order (each file left out is listed in ``excluded`` with why):

1. ``participant_label`` / ``exclude_participant_label`` (BIDS-App names) choose subjects.
2. A raw name carrying a derivative entity (``space-``, ``desc-``, ``res-``, ``label-``, ...:
   :data:`DERIVATIVE_ENTITIES`) is a derivative kept inside the raw tree: ignored.
3. ``part-phase`` (or ``real``/``imag``) is never used as a magnitude image.
4. The per-suffix entity ``filters`` (as snakebids' ``pybids_inputs`` filters): a value or a
   list of values the entity must take, ``false``: the entity must be absent, ``true``:
   present. Default: BOLD ``task-rest``.
5. The same entities with another extension (``.nii`` beside ``.nii.gz``) is a duplicate.
6. Metadata (merged sidecars) must be readable; a BOLD run must be regularly sampled
   (``VolumeTiming``, a sparse acquisition, is excluded: fALFF needs one TR).
7. One scan per acquisition slot: files that differ only in the variant entities
   (:data:`VARIANT_ENTITIES`: ``echo``, ``acq``, ``ce``, ``rec``, ``part``) are candidates
   for one slot, and ``select`` chooses one: entity by entity in the order of
   ``select.prefer``, the value listed first wins (``""``: the entity absent; unlisted
   values after listed ones), then, for the echoes of a multi-echo run, the echo whose
   ``EchoTime`` is nearest ``select.echo_time`` (BOLD contrast peaks where TE is near the
   tissue's T2*, about 30 ms at 3 T; combining echoes needs a T2* fit that this workflow
   does not make), then the file name. The others are listed as "not chosen".
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mmssl.paths import BOLD, DATATYPE

SCAN_COLUMNS = ("subject", "session", "modality", "run", "acq", "task", "key", "path", "sidecar", "days",
                "RepetitionTime", "RepetitionTime_file")
EXCLUDED_COLUMNS = ("subject", "session", "path", "reason")

# (regex on the session label, days per unit). OASIS-3 labels are days since entry
# (``d0129``); Clinica-converted trees use months since baseline (``M006``), converted
# with the mean month length, so those days are approximate (to about +-1.5 days).
DEFAULT_SESSION_DAY_PATTERNS: tuple[tuple[str, float], ...] = ((r"^d(\d+)$", 1.0), (r"^M(\d+)$", 365.25 / 12))
# entities of BIDS-derivatives names (BIDS spec, derivatives appendix): a raw scan has none
DERIVATIVE_ENTITIES = ("space", "res", "den", "desc", "label", "from", "to", "mode", "hemi", "atlas", "roi",
                       "model", "seg", "stat", "subset")
# entities that tell apart versions of one acquisition (BIDS: acquisition, contrast agent,
# reconstruction, echo, part); every other entity (task, run, ...) tells acquisitions apart
VARIANT_ENTITIES = ("echo", "acq", "ce", "rec", "part")
MAGNITUDE_PARTS = ("", "mag")

_ENTITY = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9]+)$")
_NIFTI_EXTENSIONS = (".nii.gz", ".nii")


@dataclass
class DiscoveryResult:
    """scans: one row per usable run, columns ``SCAN_COLUMNS``; excluded: ``EXCLUDED_COLUMNS``."""

    scans: pd.DataFrame
    excluded: pd.DataFrame


@dataclass(frozen=True)
class Selection:
    """Which files become scans (module docstring; the ``discover`` config keys of the same
    names, defaults: the config schema).

    filters: raw suffix -> entity -> a value, a list of values, True (present) or False (absent).
    prefer: entity -> values in preference order ("" = the entity absent).
    echo_time: seconds; None = the lowest echo number.
    participant_label / exclude_participant_label: subject labels without ``sub-`` (empty: all / none).
    """

    filters: Mapping[str, Mapping[str, Any]]
    prefer: Mapping[str, Sequence[str]]
    echo_time: float | None
    participant_label: Sequence[str]
    exclude_participant_label: Sequence[str]

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Selection:
        """From the ``discover`` section (its other keys are not used here): the keys it
        leaves out take the schema's defaults; a wrong key or value raises ValueError."""
        from mmssl.schema import section_values

        values = section_values("discover", cfg, "discover")
        return cls(filters=values["filters"], prefer=values["select"]["prefer"], echo_time=values["select"]["echo_time"],
                   participant_label=tuple(values["participant_label"]),
                   exclude_participant_label=tuple(values["exclude_participant_label"]))


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


class MetadataError(ValueError):
    """A sidecar that applies to a scan cannot be read (the scan is excluded with this reason)."""


class Sidecars:
    """The BIDS inheritance principle over one dataset: the JSON files that apply to an
    image, and their merged metadata. Each folder is listed once and each JSON read once
    (an OASIS-3-sized tree has ~15,000 images; paths are handled as strings, since pathlib's
    resolve and glob were most of discovery's time there)."""

    def __init__(self, bids_dir: Path) -> None:
        # paths stay in the form they were given (relative stays relative): they become the
        # BOLD jobs' inputs and --tr-source, which must not change when a run is moved
        self.root = os.path.normpath(bids_dir)
        self._names: dict[str, list[str]] = {}
        self._listing: dict[str, list[tuple[str, str, frozenset[tuple[str, str]]]]] = {}
        self._json: dict[str, dict[str, Any]] = {}

    def listdir(self, folder: str | Path) -> list[str]:
        """The sorted names in ``folder`` ([] when it does not exist), each folder listed
        once: images and sidecars are looked up in the same folders."""
        key = os.path.normpath(folder)
        if key not in self._names:
            try:
                self._names[key] = sorted(os.listdir(key))
            except OSError:
                self._names[key] = []
        return self._names[key]

    def chain(self, nifti: Path) -> list[Path]:
        """The sidecars of ``nifti``, dataset root first: at each level from the root down to
        the image's folder, the ``*_<suffix>.json`` files whose entities are a subset of the
        image's (fewer entities first, so the more specific one wins the merge)."""
        image = parse_bids_name(nifti.name)
        if image is None:
            return []
        wanted = set(image.entities) | {("sub", image.subject)}
        folder = os.path.dirname(os.path.normpath(nifti)) or "."
        levels = [folder]
        while folder != self.root:
            parent = os.path.dirname(folder) or "."
            if parent == folder:  # the file lies outside bids_dir: its own folders only
                break
            folder = parent
            levels.append(folder)
        chain: list[Path] = []
        for level in reversed(levels):
            found = [(len(entities), name) for name, suffix, entities in self._sidecars(level)
                     if suffix == image.suffix and entities <= wanted]
            chain += [Path(level, name) for _, name in sorted(found)]
        return chain

    def metadata(self, nifti: Path) -> tuple[dict[str, Any], dict[str, Path], list[Path]]:
        """(merged metadata, key -> the file that gave it, the chain); MetadataError naming a
        sidecar that is not a JSON object."""
        merged: dict[str, Any] = {}
        origin: dict[str, Path] = {}
        chain = self.chain(nifti)
        for path in chain:
            values = self._read(str(path))
            merged.update(values)
            origin.update(dict.fromkeys(values, path))
        return merged, origin, chain

    def _sidecars(self, folder: str) -> list[tuple[str, str, frozenset[tuple[str, str]]]]:
        """(name, suffix, entities) of the JSON files of ``folder`` that parse as sidecars."""
        if folder not in self._listing:
            names = [n for n in self.listdir(folder) if n.endswith(".json")]
            parsed = []
            for name in names:
                parts = name[: -len(".json")].split("_")
                entities = _sidecar_entities(name, parts[-1])
                if entities is not None:
                    parsed.append((name, parts[-1], frozenset(entities)))
            self._listing[folder] = parsed
        return self._listing[folder]

    def _read(self, path: str) -> dict[str, Any]:
        if path not in self._json:
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                values = json.loads(text) if text.strip() else {}
            except (OSError, UnicodeDecodeError, ValueError) as err:
                raise MetadataError(f"sidecar {path} cannot be read as JSON ({err})") from err
            if not isinstance(values, dict):
                raise MetadataError(f"sidecar {path} is not a JSON object")
            self._json[path] = values
        return self._json[path]


def _sidecar_entities(name: str, suffix: str) -> set[tuple[str, str]] | None:
    """Entities of a sidecar name such as ``task-rest_bold.json`` (top-level files have no ``sub``)."""
    if not name.endswith(f"_{suffix}.json") and name != f"{suffix}.json":
        return None
    parts = name[: -len(".json")].split("_")[:-1]
    found = [_ENTITY.match(p) for p in parts]
    if any(m is None for m in found):
        return None
    return {(m.group(1), m.group(2)) for m in found}  # type: ignore[union-attr]


def find_sidecar(nifti: Path, bids_dir: Path) -> Path | None:
    """The nearest, most specific sidecar of ``nifti`` (the last of :meth:`Sidecars.chain`)."""
    chain = Sidecars(Path(bids_dir)).chain(Path(nifti))
    return chain[-1] if chain else None


def discover(
    bids_dir: str | Path,
    modalities: Sequence[str],
    selection: Selection | None = None,
    session_day_patterns: Sequence[tuple[str, float]] = DEFAULT_SESSION_DAY_PATTERNS,
) -> DiscoveryResult:
    """List the scans of the raw ``modalities`` (BIDS suffixes among T1w, T2w, FLAIR, bold:
    :func:`mmssl.modalities.modalities_of` of the configured sources) of every subject, one per
    acquisition (module docstring). A subject with a scan of some of them is kept whatever
    it lacks; one with none goes to ``excluded`` (with every file of it that was set aside,
    and why).

    Raises FileNotFoundError if ``bids_dir`` is missing and ValueError if it has no ``sub-*``
    folder or a modality is not one of the suffixes above.
    """
    selection = selection or Selection.from_config({})
    bids_dir = Path(bids_dir)
    unknown = [m for m in modalities if m not in DATATYPE]
    if unknown or not modalities:
        raise ValueError(f"discover: modalities {list(modalities)}: expected one or more of {', '.join(DATATYPE)}")
    if not bids_dir.is_dir():
        raise FileNotFoundError(f"BIDS directory {bids_dir} does not exist (config key bids_dir)")
    subject_dirs = sorted(p for p in bids_dir.glob("sub-*") if p.is_dir())
    if not subject_dirs:
        raise ValueError(f"BIDS directory {bids_dir} contains no sub-* folders; is bids_dir the dataset root?")
    sidecars = Sidecars(bids_dir)
    rows: list[dict] = []
    excluded: list[dict] = []
    for subject_dir in subject_dirs:
        subject = subject_dir.name[len("sub-"):]
        left_out = _participant_reason(subject, selection)
        if left_out:
            excluded.append(_exclusion(subject, "", subject_dir, left_out))
            continue
        scans, dropped = _subject_scans(subject_dir, sidecars, modalities, selection, session_day_patterns)
        excluded += dropped
        if not scans:
            excluded.append(_exclusion(subject, "", subject_dir, f"no usable scan: {missing_reason(modalities, selection)}"))
        rows += scans
    scans_df = pd.DataFrame(rows, columns=list(SCAN_COLUMNS))
    scans_df = scans_df.sort_values(["subject", "session", "modality", "key"], kind="stable").reset_index(drop=True)
    return DiscoveryResult(scans=scans_df, excluded=pd.DataFrame(excluded, columns=list(EXCLUDED_COLUMNS)))


def _participant_reason(subject: str, selection: Selection) -> str:
    if selection.participant_label and subject not in selection.participant_label:
        return "not in participant_label"
    if subject in selection.exclude_participant_label:
        return "in exclude_participant_label"
    return ""


def missing_reason(modalities: Sequence[str], selection: Selection | None = None) -> str:
    """``no T1w run and no BOLD run (task-rest)`` for the raw suffixes ``modalities``."""
    filters = (selection or Selection.from_config({})).filters
    parts = []
    for modality in modalities:
        wanted = ", ".join(f"{k}-{v}" for k, v in filters.get(modality, {}).items())
        name = "BOLD run" if modality == BOLD else f"{modality} run"
        parts.append(f"{name} ({wanted})" if wanted else name)
    return "no " + " and no ".join(parts)


@dataclass
class _Candidate:
    path: Path
    name: BidsName
    row: dict


def _subject_scans(
    subject_dir: Path, sidecars: Sidecars, modalities: Sequence[str], selection: Selection,
    patterns: Sequence[tuple[str, float]],
) -> tuple[list[dict], list[dict]]:
    """Scan rows of one subject, and exclusions of files that look like inputs but are not used."""
    subject = subject_dir.name[len("sub-"):]
    session_dirs = sorted(p for p in subject_dir.glob("ses-*") if p.is_dir()) or [subject_dir]
    excluded: list[dict] = []
    slots: dict[tuple, list[_Candidate]] = {}
    for session_dir in session_dirs:
        session = session_dir.name[len("ses-"):] if session_dir is not subject_dir else ""
        for modality in modalities:
            seen: dict[tuple, Path] = {}
            for path in _images(sidecars, session_dir / DATATYPE[modality], modality):
                candidate, reason = _candidate(path, subject, session, modality, sidecars, selection, patterns)
                if reason is None:
                    assert candidate is not None
                    entities = candidate.name.entities
                    if entities in seen:
                        reason = f"duplicate of {seen[entities].name} (same entities, other extension)"
                    else:
                        seen[entities] = path
                        slot = (session, modality, tuple((k, v) for k, v in entities if k not in VARIANT_ENTITIES))
                        slots.setdefault(slot, []).append(candidate)
                if reason is not None:
                    excluded.append(_exclusion(subject, session, path, reason))
    rows = []
    for candidates in slots.values():
        ranked = sorted(candidates, key=lambda c: _rank(c, selection))
        chosen = ranked[0]
        rows.append(chosen.row)
        for other in ranked[1:]:
            excluded.append(_exclusion(subject, chosen.row["session"], other.path,
                                       f"not chosen: {_why_chosen(chosen, other, selection)}"))
    return rows, excluded


def _images(sidecars: Sidecars, folder: Path, suffix: str) -> list[Path]:
    """``sub-*_<suffix>.nii*`` in ``folder``, sorted (one listing per folder, shared with the
    sidecar lookup: pathlib's glob was a fifth of discovery's time on an OASIS-3-sized tree).
    Any ``.nii*`` (a ``.nii.bz2`` too): a name that then fails to parse is listed with the reason."""
    return [folder / n for n in sidecars.listdir(folder) if n.startswith("sub-") and f"_{suffix}.nii" in n]


def _rank(candidate: _Candidate, selection: Selection) -> tuple:
    """Sort key of a slot's candidates: ``prefer`` entity by entity, then the echo, then the name."""
    name = candidate.name
    ranks = []
    for entity, values in selection.prefer.items():
        value = name.get(entity)
        ranks.append(list(values).index(value) if value in values else len(values))
    return (*ranks, _echo_rank(candidate, selection), candidate.path.name)


def _echo_rank(candidate: _Candidate, selection: Selection) -> float:
    echo = candidate.name.get("echo")
    if not echo:
        return 0.0
    echo_time = candidate.row.get("EchoTime")
    if selection.echo_time is None or echo_time is None:
        return float(echo) if echo.isdigit() else math.inf
    return abs(float(echo_time) - selection.echo_time)


def _why_chosen(chosen: _Candidate, other: _Candidate, selection: Selection) -> str:
    """Why ``chosen`` ranks before ``other``: the first criterion of :func:`_rank` that differs."""
    a, b = _rank(chosen, selection), _rank(other, selection)
    n_prefer = len(selection.prefer)
    first = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    if first < n_prefer:
        entity = list(selection.prefer)[first]
        value = chosen.name.get(entity)
        rule = f"discover.select.prefer.{entity} ranks {entity}-{value or '(absent)'} first"
    elif first == n_prefer:
        rule = (f"discover.select.echo_time {selection.echo_time:g} s is nearest EchoTime {chosen.row.get('EchoTime')}"
                if selection.echo_time is not None and chosen.row.get("EchoTime") is not None else "the lowest echo")
    else:
        rule = "the first file name (no rule of discover.select tells them apart)"
    return f"{chosen.path.name} was chosen for this acquisition ({rule})"


def _candidate(
    path: Path, subject: str, session: str, modality: str, sidecars: Sidecars, selection: Selection,
    patterns: Sequence[tuple[str, float]],
) -> tuple[_Candidate | None, str | None]:
    """One candidate scan from a file name and its merged metadata, or the reason the file is not used."""
    name = parse_bids_name(path.name)
    if name is None or name.extension not in _NIFTI_EXTENSIONS:
        return None, "file name is not a BIDS NIfTI name (sub-<label>[_<key>-<value>...]_<suffix>.nii[.gz])"
    if name.subject != subject or name.get("ses") != session:
        return None, f"file name entities (sub-{name.subject}, ses-{name.get('ses') or 'none'}) disagree with its folder"
    derivative = [f"{k}-{v}" for k, v in name.entities if k in DERIVATIVE_ENTITIES]
    if derivative:
        return None, f"derivative entity {', '.join(derivative)} in the raw tree (a derivative, not a raw scan)"
    if name.get("part") not in MAGNITUDE_PARTS:
        return None, f"part-{name.get('part')} is not a magnitude image"
    reason = _filter_reason(name, selection.filters.get(modality, {}), modality)
    if reason:
        return None, reason
    try:
        metadata, origin, chain = sidecars.metadata(path)
    except MetadataError as err:
        return None, str(err)
    tr, tr_file = metadata.get("RepetitionTime"), origin.get("RepetitionTime")
    if modality == BOLD and "VolumeTiming" in metadata:
        return None, (f"irregular sampling: VolumeTiming in {origin['VolumeTiming']} (a sparse acquisition); fALFF "
                      "needs one RepetitionTime, and the header's is not used for such a run")
    if modality == BOLD and tr is not None and not (isinstance(tr, (int, float)) and tr > 0):
        return None, f"RepetitionTime {tr!r} in {tr_file} is not a positive number of seconds"
    row = {
        "subject": subject,
        "session": session,
        "modality": modality,
        "run": name.get("run"),
        "acq": name.get("acq"),
        "task": name.get("task"),
        # a BOLD run of the one task asked for needs no task in its id (OASIS-3's ids stay as they were)
        "key": scan_key(name, drop_task=modality == BOLD and isinstance(selection.filters.get(BOLD, {}).get("task"), str)),
        "path": str(path),
        "sidecar": ";".join(str(p) for p in chain),
        "days": session_days(session, patterns),
        "RepetitionTime": float(tr) if tr is not None else math.nan,
        "RepetitionTime_file": str(tr_file) if tr_file is not None else "",
        "EchoTime": metadata.get("EchoTime"),
    }
    return _Candidate(path, name, row), None


def _filter_reason(name: BidsName, filters: Mapping[str, Any], modality: str) -> str:
    """Why ``name`` fails the entity filters of its suffix ("" when it passes)."""
    for entity, wanted in filters.items():
        value = name.get(entity)
        key = f"discover.filters.{modality}.{entity}"
        if wanted is True and not value:
            return f"{key}: no {entity} entity (it must be present)"
        if wanted is False and value:
            return f"{key}: {entity}-{value} present (it must be absent)"
        if isinstance(wanted, (str, list, tuple)):
            allowed = [wanted] if isinstance(wanted, str) else list(wanted)
            if value not in allowed:
                if modality == BOLD and entity == "task" and allowed == ["rest"]:
                    return f"BOLD task-{value or 'none'} is not the resting-state task-rest ({key})"
                return f"{key}: {entity}-{value or '(absent)'} is not one of {allowed}"
    return ""


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
