"""Clinical labels for MR sessions, and the (T1w, BOLD) pairs of each subject.

Every MR session is matched to the subject's nearest clinical visit (OASIS-3 UDS table:
one row per visit, ``days_to_visit`` since entry) within ``window_days``; the visit's CDR
and diagnosis give a label through an ordered rule list. Pairs are then formed per subject
from the scans whose session matched. Whatever is left out is listed with its reason.

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
in one of the subject's pairs (the baseline diagnosis), "last" = at the latest. Age and sex
come from the same visit (age: the age-at-visit column, else age at entry + session days /
365.25). Every pair of a subject carries the subject's label, so a subject never straddles
classes in splits or in the probe.

Nearest visit: smallest |visit days - session days|, ties to the earlier visit. A session
whose label has no day number (``ses-M000`` gives days via months, ``ses-baseline`` none) is
excluded unless ``undated_session_days`` supplies one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmssl.preprocess.bids import EXCLUDED_COLUMNS
from mmssl.preprocess.errors import NotEnoughSubjectsError

SUBJECT_COLUMNS = ("subject", "label", "age", "sex", "n_pairs")
PAIR_COLUMNS = (
    "pair_id", "subject", "t1_session", "t1_run", "t1_path", "bold_session", "bold_run", "bold_path",
    "bold_sidecar", "label", "days_gap",
)

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

    pairing: "all" = every T1w x every BOLD of a subject (the paper: 4021 pairs from 826
    subjects); "same_session" = T1w and BOLD from the same session only.
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
        if self.pairing not in ("all", "same_session"):
            raise ValueError(f"pairing must be 'all' or 'same_session', got {self.pairing!r}")
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
class PairsResult:
    """subjects: ``SUBJECT_COLUMNS``; pairs: ``PAIR_COLUMNS`` (+ t1_days, bold_days);
    excluded: ``EXCLUDED_COLUMNS``."""

    subjects: pd.DataFrame
    pairs: pd.DataFrame
    excluded: pd.DataFrame


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
                    "reason": f"session label {session or '(none)'!r} carries no day number to match a clinical visit"}
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


def build_pairs(scans: pd.DataFrame, clinical: pd.DataFrame, settings: PairingSettings | None = None) -> PairsResult:
    """Label sessions, then form each subject's (T1w, BOLD) pairs under ``settings.pairing``.

    scans: ``discover(...).scans``; clinical: ``read_clinical(...)``. pair_id is
    ``sub-<subject>_<t1 key>__<bold key>``; days_gap = |T1w session days - BOLD session days|.
    ``settings`` None: the schema's ``discover`` defaults.
    """
    settings = settings or PairingSettings.from_config({})
    matched, unmatched = match_sessions(scans, clinical, settings)
    excluded = _scan_exclusions(scans, unmatched)
    usable = scans.merge(matched[["subject", "session", "label", "days"]].rename(columns={"days": "match_days"}),
                         on=["subject", "session"], how="inner")
    pair_rows, subject_rows = [], []
    for subject, group in usable.groupby("subject", sort=True):
        pairs, dropped = _subject_pairs(subject, group, settings.pairing)
        excluded += dropped
        if not pairs:
            reason = _no_pair_reason(group, settings.pairing)
            excluded.append({"subject": subject, "session": "", "path": "", "reason": reason})
            excluded += [{"subject": subject, "session": r.session, "path": r.path, "reason": f"subject has {reason}"}
                         for r in group.itertuples(index=False)]
            continue
        paired_sessions = {p["t1_session"] for p in pairs} | {p["bold_session"] for p in pairs}
        mine = matched[(matched["subject"] == subject) & matched["session"].isin(paired_sessions)]
        info = _subject_info(mine, settings.subject_label)
        for p in pairs:
            p["label"] = info["label"]
        pair_rows += pairs
        subject_rows.append({**info, "subject": subject, "n_pairs": len(pairs)})
    for subject in sorted(set(scans["subject"]) - set(usable["subject"])):
        excluded.append({"subject": subject, "session": "", "path": "",
                         "reason": "no MR session matched a clinical visit (see its session rows)"})
    pairs_df = pd.DataFrame(pair_rows, columns=[*PAIR_COLUMNS, "t1_days", "bold_days"])
    subjects_df = pd.DataFrame(subject_rows, columns=list(SUBJECT_COLUMNS))
    return PairsResult(subjects=subjects_df, pairs=pairs_df, excluded=pd.DataFrame(excluded, columns=list(EXCLUDED_COLUMNS)))


def _scan_exclusions(scans: pd.DataFrame, unmatched: pd.DataFrame) -> list[dict]:
    """One excluded row per scan of each unmatched session (so every unused file is listed)."""
    rows = scans.merge(unmatched, on=["subject", "session"], how="inner")
    return [{"subject": r.subject, "session": r.session, "path": r.path, "reason": r.reason} for r in rows.itertuples(index=False)]


def _subject_pairs(subject: str, group: pd.DataFrame, pairing: str) -> tuple[list[dict], list[dict]]:
    """Pairs of one subject, and exclusions of scans that end up in no pair (same_session)."""
    t1s = group[group["modality"] == "T1w"]
    bolds = group[group["modality"] == "bold"]
    pairs, used = [], set()
    for t1 in t1s.itertuples(index=False):
        for bold in bolds.itertuples(index=False):
            if pairing == "same_session" and t1.session != bold.session:
                continue
            used.update((t1.path, bold.path))
            pairs.append(_pair_row(subject, t1, bold))
    unused = [r for r in group.itertuples(index=False) if r.path not in used] if pairs else []
    other = {"T1w": "BOLD", "bold": "T1w"}
    dropped = [{"subject": subject, "session": r.session, "path": r.path,
                "reason": f"no {other[r.modality]} run in the same session (pairing same_session)"} for r in unused]
    return pairs, dropped


def _pair_row(subject: str, t1: Any, bold: Any) -> dict:
    return {
        "pair_id": f"sub-{subject}_{t1.key}__{bold.key}",
        "subject": subject,
        "t1_session": t1.session, "t1_run": t1.run, "t1_path": t1.path,
        "bold_session": bold.session, "bold_run": bold.run, "bold_path": bold.path, "bold_sidecar": bold.sidecar,
        "label": "",
        "days_gap": abs(t1.match_days - bold.match_days),
        "t1_days": t1.match_days, "bold_days": bold.match_days,
    }


def _no_pair_reason(group: pd.DataFrame, pairing: str) -> str:
    modalities = set(group["modality"])
    if modalities != {"T1w", "bold"}:
        missing = "T1w" if "T1w" not in modalities else "BOLD"
        return f"no {missing} run left after clinical matching"
    return f"no session with both T1w and BOLD (pairing {pairing})"


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
