"""Discovery of one BIDS dataset: the scans of the configured sources' raw modalities
(:mod:`mmssl.bids.layout`), the subjects' labels (a clinical visit table,
:mod:`mmssl.bids.clinical`, or BIDS's own participants table,
:mod:`mmssl.bids.participants`), the samples, and every exclusion with its reason.

Discovery stops, with one message naming the keys to change, when no subject is usable or
a configured source has no scan at all: found at plan time rather than after hours of
preprocessing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mmssl.modalities import modalities_of
from mmssl.paths import BOLD, sources_of
from mmssl.bids.layout import Selection, discover, missing_reason
from mmssl.bids.clinical import (
    PairingSettings,
    build_samples,
    build_subject_samples,
    read_clinical,
    require_subjects_per_class,
)
from mmssl.errors import NotEnoughSubjectsError
from mmssl.bids.participants import read_participants


@dataclass
class Discovery:
    """subjects: one row per subject; samples: one row per sample (one scan per raw
    modality, empty where absent: :func:`mmssl.bids.clinical.sample_columns`);
    excluded: every run, visit or subject left out, with its reason (columns of
    ``EXCLUDED_COLUMNS``)."""

    subjects: pd.DataFrame
    samples: pd.DataFrame
    excluded: pd.DataFrame


class NothingToUseError(ValueError):
    """No usable subject, or a configured source without any scan: the run cannot go on."""


def run_discovery(bids_dir: str | Path, clinical_path: str | Path | None, settings: Mapping[str, Any],
                  sources: Sequence[str]) -> Discovery:
    """Discover the scans that ``sources`` (the dataset's config key ``sources``) need in
    ``bids_dir`` and form samples, labelled from the clinical table ``clinical_path``
    (None: from ``discover.participants``; ``settings``: the ``discover`` config section)."""
    modalities = modalities_of(sources)
    values = discover_values(settings)
    found = discover(Path(bids_dir), modalities, Selection.from_config(values), day_patterns(values))
    pairing = PairingSettings.from_config(values)
    if clinical_path is not None:
        result = build_samples(found.scans, read_clinical(Path(clinical_path), pairing.columns), modalities, pairing)
    else:
        subjects = read_participants(bids_dir, values["participants"], values["default_label"])
        result = build_subject_samples(found.scans, subjects, modalities, pairing.pairing)
    if values["site_key"]:
        add_sites(result, values["site_key"], modalities)
    return Discovery(result.subjects, result.samples, pd.concat([found.excluded, result.excluded], ignore_index=True))


def require_usable(found: Discovery, sources: Sequence[str], settings: Mapping[str, Any], dataset: str) -> None:
    """NothingToUseError when no sample is left or a configured source has no scan at all
    (the message names the keys to change), NotEnoughSubjectsError when some class has
    fewer subjects than ``min_subjects_per_class``."""
    values = discover_values(settings)
    where = f"dataset {dataset!r}" if dataset else "discovery"
    keys = (f"datasets.{dataset}.bids_dir, .sources, .discover.filters, .discover.participant_label"
            if dataset else "bids_dir, sources, discover.filters, discover.participant_label")
    if found.samples.empty:
        raise NothingToUseError(f"{where}: no usable subject ({missing_reason(modalities_of(sources), Selection.from_config(values))}"
                                f" for every subject); check {keys}, and clinical_csv / discover.window_days when labels "
                                f"come from a clinical table. Exclusion reasons: {reason_summary(found.excluded)}")
    for modality in modalities_of(sources):
        column = found.samples[f"{modality}_path"].fillna("")
        if not (column != "").any():
            names = ", ".join(sources_of(modality, sources))
            raise NothingToUseError(
                f"{where}: source {names} has no {missing_reason([modality], Selection.from_config(values))[3:]} in any subject; "
                f"remove it from datasets.{dataset}.sources or change datasets.{dataset}.discover.filters.{modality}. "
                f"Exclusion reasons: {reason_summary(found.excluded)}")
    pairing = PairingSettings.from_config(values)
    if pairing.min_subjects_per_class is None:
        return
    try:
        require_subjects_per_class(found.subjects, pairing.classes, pairing.min_subjects_per_class, dataset)
    except NotEnoughSubjectsError as error:
        raise NotEnoughSubjectsError(f"{error}\nexclusion reasons: {reason_summary(found.excluded)}") from error


def discover_values(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``discover`` section, its left-out keys filled in from the schema's defaults and
    validated. A wrong key or value (a session pattern that is no regular expression
    included) raises ValueError naming it."""
    from mmssl.schema import section_values

    values = section_values("discover", settings, "discover")
    for pattern, _ in values["session_day_patterns"]:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"discover.session_day_patterns: {pattern!r} is not a regular expression ({err})") from err
    return values


def check_discover_settings(settings: Mapping[str, Any] | None) -> None:
    """Build every setting of a ``discover`` section (ValueError naming a wrong one)."""
    values = discover_values(settings)
    Selection.from_config(values)
    PairingSettings.from_config(values)


def day_patterns(values: Mapping[str, Any]) -> tuple[tuple[str, float], ...]:
    return tuple((str(p), float(u)) for p, u in values["session_day_patterns"])


def sidecar_value(sidecars: str, key: str) -> str:
    """``key`` of the merged metadata of a ``;``-joined sidecar chain (root first: the last
    file holding it wins); '' when no file has it or a file cannot be read."""
    value = ""
    for sidecar in filter(None, sidecars.split(";")):
        try:
            text = Path(sidecar).read_text()
            data = json.loads(text) if text.strip() else {}
        except (ValueError, OSError):
            continue
        if isinstance(data, dict) and key in data:
            value = str(data[key])
    return value


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
