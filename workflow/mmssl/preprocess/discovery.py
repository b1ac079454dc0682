"""Discovery of one BIDS dataset: the runs of the configured sources' raw modalities from
file names, clinical visits matched to sessions, the subjects table and the samples, and
every exclusion with its reason (see :mod:`mmssl.preprocess.bids` and
:mod:`mmssl.preprocess.clinical`)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mmssl.paths import BOLD, raw_modalities
from mmssl.preprocess.bids import discover
from mmssl.preprocess.clinical import PairingSettings, build_samples, read_clinical, require_subjects_per_class
from mmssl.preprocess.errors import NotEnoughSubjectsError


@dataclass
class Discovery:
    """subjects: one row per subject; samples: one row per sample (one scan per raw
    modality, empty where absent: :func:`mmssl.preprocess.clinical.sample_columns`);
    excluded: every run, visit or subject left out, with its reason (columns of
    ``EXCLUDED_COLUMNS``)."""

    subjects: pd.DataFrame
    samples: pd.DataFrame
    excluded: pd.DataFrame


def run_discovery(bids_dir: str | Path, clinical_path: str | Path, settings: Mapping[str, Any],
                  sources: Sequence[str]) -> Discovery:
    """Discover the runs that ``sources`` (the dataset's config key ``sources``) need in
    ``bids_dir`` and form samples with the clinical table (``settings``: the ``discover``
    config section)."""
    modalities = raw_modalities(sources)
    discovery_settings, pairing = split_discover_settings(settings)
    site_key = discovery_settings.pop("site_key")
    found = discover(Path(bids_dir), modalities, **discovery_settings)
    result = build_samples(found.scans, read_clinical(Path(clinical_path), pairing.columns), modalities, pairing)
    if site_key:
        add_sites(result, site_key, modalities)
    return Discovery(result.subjects, result.samples, pd.concat([found.excluded, result.excluded], ignore_index=True))


def require_enough_subjects(found: Discovery, settings: Mapping[str, Any], dataset: str) -> None:
    """NotEnoughSubjectsError, with the exclusion reasons' counts, when some class has fewer
    subjects than ``min_subjects_per_class`` (the folds need them)."""
    _, pairing = split_discover_settings(settings)
    if pairing.min_subjects_per_class is None:
        return
    try:
        require_subjects_per_class(found.subjects, pairing.classes, pairing.min_subjects_per_class, dataset)
    except NotEnoughSubjectsError as error:
        raise NotEnoughSubjectsError(f"{error}\nexclusion reasons: {reason_summary(found.excluded)}") from error


def split_discover_settings(settings: Mapping[str, Any] | None) -> tuple[dict[str, Any], PairingSettings]:
    """The ``discover`` section, its left-out keys filled in from the schema's defaults and
    validated, split into the discovery keys (site_key, bold_task, session_day_patterns) and
    the pairing settings. A wrong key or value (a session pattern that is no regular
    expression included) raises ValueError naming it."""
    from mmssl.schema import section_values

    values = section_values("discover", settings, "discover")
    patterns = tuple((str(p), float(u)) for p, u in values["session_day_patterns"])
    for pattern, _ in patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"discover.session_day_patterns: {pattern!r} is not a regular expression ({err})") from err
    discovery = {"site_key": values["site_key"], "bold_task": values["bold_task"], "session_day_patterns": patterns}
    return discovery, PairingSettings.from_config(values)


def sidecar_value(sidecar: str, key: str) -> str:
    """``key`` of a JSON sidecar ('' when the file or the key is missing or unreadable)."""
    if not sidecar or not Path(sidecar).is_file():
        return ""
    try:
        return str(json.loads(Path(sidecar).read_text() or "{}").get(key, ""))
    except (ValueError, OSError):
        return ""


def add_sites(result: Any, site_key: str, modalities: Sequence[str]) -> None:
    """A ``site`` column from the sidecars' ``site_key`` (e.g. StationName,
    InstitutionName): a sample gets its BOLD run's value, else that of its first
    structural scan that has one; subjects their first sample's, so ``splits.group_by:
    site`` can keep every site on one side of each fold."""
    samples = result.samples
    # the BOLD run first, as before samples could lack one
    order = sorted(modalities, key=lambda m: m != BOLD)
    sidecars = samples[[f"{m}_sidecar" for m in order]].fillna("").astype(str).to_numpy()
    samples["site"] = [next((v for v in (sidecar_value(s, site_key) for s in row) if v), "unknown") for row in sidecars]
    first = samples.drop_duplicates("subject").set_index("subject")["site"]
    result.subjects["site"] = result.subjects["subject"].map(first).fillna("unknown")


def reason_summary(excluded: pd.DataFrame, top: int = 5) -> str:
    counts = excluded["reason"].value_counts().head(top)
    return "; ".join(f"{n} x {reason}" for reason, n in counts.items()) or "none"
