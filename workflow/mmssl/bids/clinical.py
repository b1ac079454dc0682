"""Clinical labels for MR sessions, and the samples of each subject.

Every MR session is matched to the subject's nearest clinical visit (OASIS-3 UDS table:
one row per visit, ``days_to_visit`` since entry) within ``window_days``; the visit's CDR
and diagnosis give a label through an ordered rule list. Samples are then formed per
subject from the scans whose session matched. Whatever is left out is listed with its reason.

A sample is one scan per raw modality (T1w, T2w, FLAIR, BOLD run: the raw suffixes of the
configured sources, :func:`mmssl.modalities.modalities_of`), a modality the subject has no
scan of in the sample's group being left empty. ``pairing`` decides the groups: ``all``
= every combination of the subject's scans (with T1w and fALFF: every T1w x every BOLD
run, the paper's pairs); ``same_session`` = every combination within one MR session;
``visit`` = within the MR sessions matched to one clinical visit. A subject with a T1w
and no BOLD run thus gives T1w-only samples rather than being excluded.

Label rule (``labels`` setting; its default, below, is the config schema's), an ordered mapping ``label -> conditions``; the first
label whose conditions all hold wins, otherwise ``default_label`` ("other")::

    HC: {cdr: [0], dx_contains: ["Cognitively normal"]}
    AD: {cdr_above: 0, dx_contains: ["AD Dementia", "DAT", "Alzheimer"]}

Conditions: ``cdr`` (list: CDR is one of these values), ``cdr_above`` (CDR strictly above),
``dx_contains`` (list: the diagnosis contains one of these phrases, case-insensitive, as
whole words). A condition on a missing value is false. OASIS-3 also writes variants such as
"AD dem w/depresss- not contribut"; add them to ``dx_contains`` to count them as AD (the
default keeps the three phrases of the spec, so those visits are "other").

Subject label (``subject_label``): "first" = the label at the earliest MR session that is
in one of the subject's samples (the baseline diagnosis), "last" = at the latest. Age and sex
come from the same visit (age: the age-at-visit column, else age at entry + session days /
365.25). Every sample of a subject carries the subject's label, so a subject never straddles
classes in splits or in the probe.

Nearest visit: smallest |visit days - session days|, ties to the earlier visit. A session
whose label has no day number (``ses-M000`` gives days via months, ``ses-baseline`` none) is
excluded unless ``undated_session_days`` supplies one.

This clinical table is one adapter; a dataset without one takes its subjects' labels from
BIDS itself (:mod:`mmssl.bids.participants`, :func:`build_subject_samples`), where
every session is used and no visit is matched.

``pairing: auto`` (the default) is ``all`` for a subject whose every session carries a day
number (OASIS-3: the paper's pairs) and ``same_session`` otherwise (``ses-1``, ``ses-mri``,
no session level): sessions without dates are not paired with each other unless asked
for (``all``); ``days_gap`` is then empty, not 0, for a sample whose scans lie in
sessions of unknown date.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmssl.paths import BOLD
from mmssl.bids.layout import EXCLUDED_COLUMNS
from mmssl.errors import NotEnoughSubjectsError

SUBJECT_COLUMNS = ("subject", "label", "age", "sex", "n_samples")
SAMPLE_COLUMNS = ("sample", "subject", "label", "age", "sex", "days_gap")
# the per-modality columns of a samples table, ``{modality}_{field}``; empty when absent
SCAN_FIELDS = ("session", "run", "days", "path", "sidecar")
# a BOLD run's metadata resolved by inheritance at discovery, and the file that gave it
BOLD_FIELDS = ("RepetitionTime", "RepetitionTime_file")
PAIRINGS = ("auto", "all", "same_session", "visit")
# the part of a sample id that stands for a modality the sample lacks (a scan key is
# never this: it is made of key-value entities, or of a suffix when a name has none)
ABSENT = "none"

_RULE_KEYS = {"cdr", "cdr_above", "dx_contains"}


@dataclass(frozen=True)
class ClinicalColumns:
    """Candidate column names in the clinical CSV; the first one present is used (config key
    ``discover.columns``; defaults: the config schema).

    age: age at the visit; age_at_entry is used (plus session days / 365.25) when no
    age-at-visit column exists. cdr, dx, age, sex may be absent (values become NaN/"").
    """

    subject: tuple[str, ...]
    days: tuple[str, ...]
    cdr: tuple[str, ...]
    dx: tuple[str, ...]
    age: tuple[str, ...]
    age_at_entry: tuple[str, ...]
    sex: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> ClinicalColumns:
        """From ``discover.columns`` (a name or a list of names per key); the keys it leaves
        out take the schema's defaults, an unknown key raises ValueError naming it."""
        from mmssl.schema import section_values

        values = section_values("clinical_columns", cfg, "discover.columns")
        return cls(**{k: (v,) if isinstance(v, str) else tuple(v) for k, v in values.items()})


@dataclass(frozen=True)
class PairingSettings:
    """Settings of session-to-visit matching, labelling and pairing (see module docstring;
    the keys of config section ``discover`` other than discovery's own, defaults: the config
    schema).

    pairing: which scans form a sample (module docstring): "all" (with T1w and fALFF: every
    T1w x every BOLD of a subject, the paper's 4021 pairs from 826 subjects),
    "same_session" or "visit".
    undated_session_days: days assumed for sessions whose label carries no day number
    (None = exclude them).
    min_subjects_per_class: checked by ``require_subjects_per_class`` (None = no check).
    """

    window_days: float
    labels: Mapping[str, Mapping[str, Any]]
    default_label: str
    pairing: str
    subject_label: str
    undated_session_days: float | None
    columns: ClinicalColumns
    min_subjects_per_class: int | None
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {', '.join(PAIRINGS)}, got {self.pairing!r}")
        if self.subject_label not in ("first", "last"):
            raise ValueError(f"subject_label must be 'first' or 'last', got {self.subject_label!r}")
        if not self.window_days >= 0:
            raise ValueError(f"window_days must be >= 0, got {self.window_days!r}")
        for label, rule in self.labels.items():
            unknown = set(rule) - _RULE_KEYS
            if unknown:
                raise ValueError(f"labels.{label}: unknown condition(s) {sorted(unknown)}; allowed {sorted(_RULE_KEYS)}")

    @classmethod
    def from_config(cls, settings: Mapping[str, Any] | None) -> PairingSettings:
        """From the ``discover`` section (its discovery keys site_key, bold_task and
        session_day_patterns are not used here): the keys it leaves out take the schema's
        defaults; an unknown key or a wrong value raises ValueError naming it."""
        from mmssl.schema import section_values

        values = section_values("discover", settings, "discover")
        return cls(
            window_days=float(values["window_days"]),
            labels=values["labels"],
            default_label=values["default_label"],
            pairing=values["pairing"],
            subject_label=values["subject_label"],
            undated_session_days=values["undated_session_days"],
            columns=ClinicalColumns.from_config(values["columns"]),
            min_subjects_per_class=values["min_subjects_per_class"],
            classes=tuple(values["classes"]),
        )


@dataclass
class SamplesResult:
    """subjects: ``SUBJECT_COLUMNS``; samples: :func:`sample_columns`; excluded:
    ``EXCLUDED_COLUMNS``."""

    subjects: pd.DataFrame
    samples: pd.DataFrame
    excluded: pd.DataFrame


def sample_columns(modalities: Sequence[str]) -> list[str]:
    """The columns of a samples table: ``SAMPLE_COLUMNS``, then ``{modality}_{field}`` for
    each raw modality and each of ``SCAN_FIELDS`` (e.g. T1w_session, ..., bold_sidecar)."""
    return [*SAMPLE_COLUMNS, *(f"{m}_{field}" for m in modalities for field in _fields(m))]


def _fields(modality: str) -> tuple[str, ...]:
    return (*SCAN_FIELDS, *BOLD_FIELDS) if modality == BOLD else SCAN_FIELDS


def sample_id(subject: str, keys: Sequence[str | None]) -> str:
    """``sub-<subject>_<key>__<key>...``: one scan key per raw modality, ``none`` for a
    modality the sample lacks (with T1w and BOLD both present: the paper-style pair id
    ``sub-X_ses-d0129_run-01__ses-d0129_run-02``)."""
    return f"sub-{subject}_" + "__".join(ABSENT if key is None else key for key in keys)


def sample_keys(sample: str, subject: str, n_modalities: int) -> list[str | None]:
    """The scan keys of a :func:`sample_id` (None where absent); ValueError if ``sample``
    is not an id of ``subject`` with ``n_modalities`` parts."""
    head = f"sub-{subject}_"
    parts = sample[len(head):].split("__") if sample.startswith(head) else []
    if len(parts) != n_modalities:
        raise ValueError(f"sample id {sample!r} is not sub-{subject}_<key>__... with {n_modalities} scan keys")
    return [None if part == ABSENT else part for part in parts]


def read_clinical(path: str | Path, columns: ClinicalColumns | None = None) -> pd.DataFrame:
    """Read the clinical CSV into columns subject, days, cdr, dx, age, age_at_entry, sex.

    Subject ids lose a leading ``sub-``. Raises FileNotFoundError, or ValueError naming the
    file and the candidate names when the subject or days column is missing. ``columns``
    None: the schema's ``discover.columns`` defaults.
    """
    columns = columns or ClinicalColumns.from_config({})
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"clinical table {path} not found (config key clinical_csv)")
    sep = "\t" if path.suffix in (".tsv", ".tab") else ","
    raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=True)
    out = pd.DataFrame(index=raw.index)
    for key in ("subject", "days", "cdr", "dx", "age", "age_at_entry", "sex"):
        candidates = getattr(columns, key)
        name = next((c for c in candidates if c in raw.columns), None)
        if name is None and key in ("subject", "days"):
            raise ValueError(f"clinical table {path}: no {key} column; looked for {list(candidates)}, found {list(raw.columns)}")
        out[key] = raw[name] if name is not None else np.nan
    out["subject"] = out["subject"].astype(str).str.strip().str.removeprefix("sub-")
    for key in ("days", "cdr", "age", "age_at_entry"):
        out[key] = pd.to_numeric(out[key], errors="coerce")
    bad_days = out["days"].isna()
    if bad_days.any():
        raise ValueError(f"clinical table {path}: {int(bad_days.sum())} row(s) with a non-numeric days value, first at row {int(np.argmax(bad_days)) + 2}")
    out["dx"] = out["dx"].fillna("").astype(str)
    out["sex"] = out["sex"].map(_normalise_sex)
    return out


def _normalise_sex(value: Any) -> str:
    """'M'/'male' -> 'M', 'F'/'female' -> 'F', missing -> '', anything else kept as written."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = str(value).strip()
    lowered = text.lower()
    if lowered in ("m", "male"):
        return "M"
    if lowered in ("f", "female"):
        return "F"
    return text


def apply_label_rule(cdr: float, dx: str, labels: Mapping[str, Mapping[str, Any]], default: str) -> str:
    """The first label whose conditions all hold for (CDR, diagnosis), else ``default``."""
    for label, rule in labels.items():
        if _rule_holds(rule, cdr, dx):
            return label
    return default


def _rule_holds(rule: Mapping[str, Any], cdr: float, dx: str) -> bool:
    has_cdr = cdr is not None and not math.isnan(cdr)
    if "cdr" in rule and not (has_cdr and any(math.isclose(cdr, float(v)) for v in rule["cdr"])):
        return False
    if "cdr_above" in rule and not (has_cdr and cdr > float(rule["cdr_above"])):
        return False
    if "dx_contains" in rule:
        phrases = [rule["dx_contains"]] if isinstance(rule["dx_contains"], str) else rule["dx_contains"]
        if not any(re.search(rf"\b{re.escape(p)}\b", dx, flags=re.IGNORECASE) for p in phrases):
            return False
    return True


def match_sessions(scans: pd.DataFrame, clinical: pd.DataFrame, settings: PairingSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Match each (subject, session) of ``scans`` to its nearest clinical visit.

    Returns (matched, unmatched). matched: subject, session, days, visit_days, gap, label,
    age, sex. unmatched: subject, session, reason. Ties in distance go to the earlier visit.
    """
    sessions = scans[["subject", "session", "days"]].drop_duplicates(["subject", "session"])
    visits = {s: g.sort_values("days", kind="stable") for s, g in clinical.groupby("subject", sort=False)}
    matched, unmatched = [], []
    for row in sessions.itertuples(index=False):
        result = _match_one(row.subject, row.session, row.days, visits.get(row.subject), settings)
        (matched if "reason" not in result else unmatched).append(result)
    matched_df = pd.DataFrame(matched, columns=["subject", "session", "days", "visit_days", "gap", "label", "age", "sex"])
    return matched_df, pd.DataFrame(unmatched, columns=["subject", "session", "reason"])


def _match_one(subject: str, session: str, days: float, visits: pd.DataFrame | None, settings: PairingSettings) -> dict:
    """The matched visit of one session as a dict, or a dict with the exclusion ``reason``."""
    if visits is None:
        return {"subject": subject, "session": session, "reason": "subject not in the clinical table"}
    if math.isnan(days):
        if settings.undated_session_days is None:
            return {"subject": subject, "session": session,
                    "reason": f"session label {session or '(none)'!r} carries no day number to match a clinical visit "
                              "(set discover.session_day_patterns or discover.undated_session_days, or leave clinical_csv "
                              "out to take labels from participants.tsv)"}
        days = float(settings.undated_session_days)
    gaps = (visits["days"] - days).abs().to_numpy()
    best = int(np.argmin(gaps))  # visits are sorted by days, so a tie goes to the earlier visit
    gap = float(gaps[best])
    if gap > settings.window_days:
        return {"subject": subject, "session": session,
                "reason": f"nearest clinical visit is {gap:g} days away (window {settings.window_days:g} days)"}
    visit = visits.iloc[best]
    if math.isnan(visit["cdr"]) and not visit["dx"].strip():
        return {"subject": subject, "session": session,
                "reason": f"matched clinical visit (day {visit['days']:g}) has neither CDR nor diagnosis"}
    age = visit["age"]
    entry_ages = visits["age_at_entry"].dropna()  # a per-subject constant, often filled in one row only
    if math.isnan(age) and len(entry_ages):
        age = float(entry_ages.iloc[0]) + days / 365.25
    sex = next((s for s in visits["sex"] if s), "")
    label = apply_label_rule(visit["cdr"], visit["dx"], settings.labels, settings.default_label)
    return {"subject": subject, "session": session, "days": days, "visit_days": float(visit["days"]),
            "gap": gap, "label": label, "age": age, "sex": sex}


def build_samples(scans: pd.DataFrame, clinical: pd.DataFrame, modalities: Sequence[str],
                  settings: PairingSettings | None = None) -> SamplesResult:
    """Label sessions, then form each subject's samples under ``settings.pairing``.

    scans: ``discover(...).scans``; clinical: ``read_clinical(...)``; modalities: the raw
    suffixes of the configured sources, in order (``[T1w, bold]`` for the default sources), one scan of
    each per sample at most. Every scan whose session matched a visit is in some sample;
    a subject is excluded only when none of its sessions matched. Within a subject, samples
    with more modalities come first (so "the subject's first sample" is its most complete
    one), otherwise in scan order. days_gap: the largest |difference| of the sample's
    session days (0 for one scan). ``settings`` None: the schema's ``discover`` defaults.
    """
    settings = settings or PairingSettings.from_config({})
    modalities = list(modalities)
    matched, unmatched = match_sessions(scans, clinical, settings)
    excluded = _scan_exclusions(scans, unmatched)
    usable = scans.merge(matched[["subject", "session", "days", "visit_days"]].rename(columns={"days": "match_days"}),
                         on=["subject", "session"], how="inner")

    def info(subject: str, group: pd.DataFrame) -> dict:
        mine = matched[(matched["subject"] == subject) & matched["session"].isin(set(group["session"]))]
        return _subject_info(mine, settings.subject_label)

    result = _samples_per_subject(usable, modalities, settings.pairing, info)
    for subject in sorted(set(scans["subject"]) - set(usable["subject"])):
        excluded.append({"subject": subject, "session": "", "path": "",
                         "reason": "no MR session matched a clinical visit (see its session rows)"})
    result.excluded = pd.DataFrame(excluded, columns=list(EXCLUDED_COLUMNS))
    return result


def build_subject_samples(scans: pd.DataFrame, subjects: pd.DataFrame, modalities: Sequence[str],
                          pairing: str) -> SamplesResult:
    """Samples without clinical visits: every session is used, and each subject takes its
    label, age and sex from ``subjects`` (columns subject, label, age, sex, from
    :func:`mmssl.bids.participants.read_participants`; a subject not in it gets an
    empty label). ``pairing``: auto, all or same_session (visit needs a clinical table)."""
    if pairing == "visit":
        raise ValueError("discover.pairing: visit matches clinical visits, which needs clinical_csv; "
                         "use auto, all or same_session with labels from participants.tsv")
    modalities = list(modalities)
    usable = scans.assign(match_days=scans["days"], visit_days=np.nan)
    table = subjects.set_index("subject")

    def info(subject: str, group: pd.DataFrame) -> dict:
        if subject not in table.index:
            return {"label": "", "age": np.nan, "sex": ""}
        row = table.loc[subject]
        return {"label": row["label"], "age": row["age"], "sex": row["sex"]}

    result = _samples_per_subject(usable, modalities, pairing, info)
    result.excluded = pd.DataFrame([], columns=list(EXCLUDED_COLUMNS))
    return result


def _samples_per_subject(usable: pd.DataFrame, modalities: Sequence[str], pairing: str, info: Any) -> SamplesResult:
    """The samples and subjects tables of the usable scans (with ``match_days`` and
    ``visit_days``), ``info(subject, scans)`` giving a subject's label, age and sex."""
    modalities = list(modalities)
    unknown = sorted(set(usable["modality"]) - set(modalities))
    if unknown:
        raise ValueError(f"scans of modalities {unknown} that are not among the configured {modalities}")
    sample_rows, subject_rows = [], []
    for subject, group in usable.groupby("subject", sort=True):
        samples = _subject_samples(subject, group, modalities, pairing)
        subject_info = info(subject, group)
        sample_rows += [{**sample, **subject_info} for sample in samples]
        subject_rows.append({**subject_info, "subject": subject, "n_samples": len(samples)})
    samples_df = pd.DataFrame(sample_rows, columns=sample_columns(modalities))
    subjects_df = pd.DataFrame(subject_rows, columns=list(SUBJECT_COLUMNS))
    return SamplesResult(subjects=subjects_df, samples=samples_df, excluded=pd.DataFrame([], columns=list(EXCLUDED_COLUMNS)))


def _scan_exclusions(scans: pd.DataFrame, unmatched: pd.DataFrame) -> list[dict]:
    """One excluded row per scan of each unmatched session (so every unused file is listed)."""
    rows = scans.merge(unmatched, on=["subject", "session"], how="inner")
    return [{"subject": r.subject, "session": r.session, "path": r.path, "reason": r.reason} for r in rows.itertuples(index=False)]


def _subject_samples(subject: str, group: pd.DataFrame, modalities: list[str], pairing: str) -> list[dict]:
    """Samples of one subject: per group of its scans (all of them, one session, or the
    sessions of one clinical visit), every combination of one scan per modality, a
    modality without a scan in the group left empty; more complete samples first."""
    if pairing == "auto":
        # dated sessions (OASIS-3's d0129, Clinica's M006) pair across sessions as the paper's
        # pairs do; sessions of unknown date pair only within themselves
        pairing = "all" if group["days"].notna().all() else "same_session"
    if pairing == "all":
        groups = [group]
    else:
        key = "session" if pairing == "same_session" else "visit_days"
        groups = [g for _, g in group.groupby(key, sort=True)]
    rows = []
    for part in groups:
        options = [list(part[part["modality"] == m].itertuples(index=False)) or [None] for m in modalities]
        rows += [_sample_row(subject, modalities, combo) for combo in itertools.product(*options)]
    # stable: with every modality present (and always under "all") the order is the scans'
    return sorted(rows, key=lambda row: -sum(bool(row[f"{m}_path"]) for m in modalities))


def _sample_row(subject: str, modalities: list[str], combo: Sequence[Any]) -> dict:
    """One samples-table row (without label, age, sex) from one scan per modality (None: absent)."""
    present = [scan for scan in combo if scan is not None]
    days = [scan.match_days for scan in present]
    if len({scan.session for scan in present}) == 1:
        gap = 0.0
    elif all(not math.isnan(scan.days) for scan in present):
        gap = max(days) - min(days)
    else:
        gap = math.nan  # a session of unknown date (its days assumed, or none): the gap is unknown, not 0
    row: dict[str, Any] = {"sample": sample_id(subject, [None if scan is None else scan.key for scan in combo]),
                           "subject": subject, "days_gap": gap}
    for modality, scan in zip(modalities, combo):
        row |= {f"{modality}_session": "" if scan is None else scan.session, f"{modality}_run": "" if scan is None else scan.run,
                f"{modality}_days": math.nan if scan is None else scan.match_days,
                f"{modality}_path": "" if scan is None else scan.path, f"{modality}_sidecar": "" if scan is None else scan.sidecar}
        if modality == BOLD:  # a scans table made by hand may lack the metadata columns
            empty = {"RepetitionTime": math.nan, "RepetitionTime_file": ""}
            row |= {f"{modality}_{key}": getattr(scan, key, empty[key]) if scan is not None else empty[key]
                    for key in BOLD_FIELDS}
    return row


def _subject_info(matched: pd.DataFrame, which: str) -> dict:
    """Label, age and sex of a subject from its first or last matched session."""
    ordered = matched.sort_values(["days", "session"], kind="stable")
    row = ordered.iloc[0] if which == "first" else ordered.iloc[-1]
    return {"label": row["label"], "age": row["age"], "sex": row["sex"]}


def class_counts(subjects: pd.DataFrame, classes: Sequence[str]) -> dict[str, int]:
    """Number of subjects per class (classes absent from ``subjects`` count 0)."""
    counts = subjects["label"].value_counts()
    return {c: int(counts.get(c, 0)) for c in classes}


def require_subjects_per_class(subjects: pd.DataFrame, classes: Sequence[str], minimum: int, dataset: str = "") -> None:
    """Stop with NotEnoughSubjectsError if any class has fewer than ``minimum`` subjects."""
    counts = class_counts(subjects, classes)
    short = {c: n for c, n in counts.items() if n < minimum}
    if short:
        where = f"dataset {dataset!r}: " if dataset else ""
        raise NotEnoughSubjectsError(
            f"{where}too few subjects per class for the folds: {counts} remain, need at least {minimum} in each of "
            f"{list(classes)} (see excluded.tsv for what was removed)")
