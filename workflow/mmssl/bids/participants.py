"""Subjects and labels from BIDS itself: ``participants.tsv`` (or a table under
``phenotype/``), the adapter used when a dataset has no clinical visit table.

Config section ``discover.participants`` (defaults: the config schema): ``table`` (relative
to the BIDS root), ``label_column`` (null: no label; pretraining needs none, and the probe
then writes a row saying so), ``label_map`` (value -> class; a value not listed becomes
``discover.default_label``; empty: the values as written), ``age_column``, ``sex_column``.
BIDS writes missing values as ``n/a``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PARTICIPANT_COLUMNS = ("subject", "label", "age", "sex")


def read_participants(bids_dir: str | Path, settings: Mapping[str, Any], default_label: str) -> pd.DataFrame:
    """One row per subject of the table (columns ``PARTICIPANT_COLUMNS``; ``participant_id``
    loses its ``sub-``). No label column configured: labels are empty; a table that does
    not exist is then an empty table. ValueError naming the file and the key when a
    configured column is missing or the table cannot be read."""
    path = Path(bids_dir) / settings["table"]
    label_column = settings["label_column"]
    if not path.is_file():
        if label_column:
            raise FileNotFoundError(f"{path}: not found; discover.participants.label_column {label_column!r} needs "
                                    "discover.participants.table (relative to bids_dir)")
        return pd.DataFrame(columns=list(PARTICIPANT_COLUMNS))
    try:
        raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable TSV ({err})") from err
    if "participant_id" not in raw.columns:
        raise ValueError(f"{path}: no participant_id column (BIDS requires it); columns: {list(raw.columns)}")
    if label_column and label_column not in raw.columns:
        raise ValueError(f"{path}: no column {label_column!r} (discover.participants.label_column); columns: {list(raw.columns)}")
    out = pd.DataFrame({"subject": raw["participant_id"].str.strip().str.removeprefix("sub-")})
    out["label"] = _labels(raw[label_column], settings["label_map"], default_label) if label_column else ""
    out["age"] = _column(raw, settings["age_column"], numeric=True)
    out["sex"] = _column(raw, settings["sex_column"], numeric=False)
    duplicated = out["subject"][out["subject"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{path}: participant_id repeated: {sorted(duplicated.unique())[:10]}")
    return out


def _labels(values: pd.Series, label_map: Mapping[str, str], default_label: str) -> pd.Series:
    """Class of each value: ``label_map``'s (unlisted -> ``default_label``), or the value itself
    without a map; ``n/a`` and empty cells give an empty label (unlabelled)."""
    text = values.str.strip()
    missing = text.isin(["", "n/a"])
    mapped = text.map(lambda v: str(label_map.get(v, default_label))) if label_map else text
    return mapped.where(~missing, "")


def _column(raw: pd.DataFrame, name: str | None, numeric: bool) -> pd.Series:
    if not name or name not in raw.columns:
        return pd.Series(np.nan if numeric else "", index=raw.index)
    values = raw[name].replace("n/a", "")
    return pd.to_numeric(values, errors="coerce") if numeric else values.str.strip()
