"""Per-scan status files, and the step that collects them.

Each preprocessing job writes a status TSV (columns :data:`STATUS_COLUMNS`): header only
when the scan was preprocessed, one row with the reason when it was excluded.
:func:`collect` merges discovery's exclusions with the scans', takes the excluded scans
out of the samples (their sources become absent), and returns ``excluded.tsv`` and the
table of preprocessed samples that landmarks, pack and QC read (derivative paths from
:func:`mmssl.paths.derivatives_of`).

The preprocessed samples table (``preproc/samples.tsv``), one row per sample::

    sample  subject  label ...  {source}  mask_{source}  {source}_qc  (per source)  {modality}_session ...

(columns: :func:`mmssl.modalities.source_columns`; a *modality* is a raw BIDS suffix, a
*source* a model input, see :mod:`mmssl.modalities`)

with empty cells where the sample lacks the source. A sample that lost a scan is renamed
after the scans it keeps (:func:`mmssl.bids.clinical.sample_id`); one left with the
same scans as another, or with a subset of another's, is dropped (it is what discovery
would have formed had the scan never existed), and one left with none is excluded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmssl.io import write_tsv
from mmssl.modalities import modalities_of, source_columns, sources_of
from mmssl.paths import alff_wanted, derivatives_of, map_key
from mmssl.bids.layout import EXCLUDED_COLUMNS, exclusion_row
from mmssl.bids.clinical import SCAN_FIELDS, sample_id, sample_keys

STATUS_COLUMNS = list(EXCLUDED_COLUMNS)


def write_status(path: str | Path, source: str | Path, reason: str | None) -> None:
    """The status of one scan: header only (fine), or one row naming ``source`` and ``reason``."""
    rows = [] if reason is None else [exclusion_row(source, reason)]
    write_tsv(pd.DataFrame(rows, columns=STATUS_COLUMNS), path)


def read_table(path: str | Path) -> pd.DataFrame:
    """A TSV of text cells (ids such as run ``01`` or session ``0129`` stay text; "" for empty)."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


__all__ = ["STATUS_COLUMNS", "collect", "preproc_samples", "read_samples", "read_table", "source_columns", "write_status"]


def preproc_samples(samples: pd.DataFrame, preproc_dir: str | Path, excluded: pd.DataFrame,
                    sources: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(preprocessed samples, exclusions) from discovery's samples table (sample, subject,
    label, ..., ``{modality}_path`` per raw modality, empty where absent).

    A scan listed in ``excluded`` (column ``path``) is taken out of its samples; the
    other scans' derivatives must exist and be non-empty, else FileNotFoundError naming
    them (a rule did not run). Returns the table described in the module docstring and
    one exclusion row per sample left without any source."""
    modalities = modalities_of(sources)
    needed = ["sample", "subject", *(f"{m}_path" for m in modalities)]
    missing_columns = [c for c in needed if c not in samples.columns]
    if missing_columns:
        raise ValueError(f"discovery samples table lacks columns {missing_columns} for sources {list(sources)}; "
                         f"has {list(samples.columns)}")
    dropped = set(excluded["path"].astype(str))
    rows, lost = [], []
    for sample in samples.to_dict("records"):
        subject = str(sample["subject"])
        keys = sample_keys(str(sample["sample"]), subject, len(modalities))
        row: dict = {}
        kept = []
        for modality, key in zip(modalities, keys):
            raw = sample[f"{modality}_path"] if isinstance(sample[f"{modality}_path"], str) else ""  # NaN: absent
            present = bool(raw) and raw not in dropped
            files = _source_files(preproc_dir, raw, modality, sources) if present else {}
            for source in sources_of(modality, sources):
                for column in source_columns(source):
                    row[column] = files.get(column, "")
            if not present:
                for field in SCAN_FIELDS:
                    sample[f"{modality}_{field}"] = ""
            kept.append(key if present else None)
        if not any(kept):
            lost.append({"subject": subject, "session": "", "path": "",
                         "reason": f"sample {sample['sample']}: every scan of it was excluded in preprocessing"})
            continue
        days = [float(sample[f"{m}_days"]) for m, key in zip(modalities, kept) if key is not None and sample[f"{m}_days"] not in ("", None)]
        rest = {k: v for k, v in sample.items() if k not in ("sample", "subject") and not k.endswith(("_path", "_sidecar"))}
        if "days_gap" in rest and days:
            rest["days_gap"] = max(days) - min(days)
        rows.append({"sample": sample_id(subject, kept), "subject": subject, **row, **rest, "_scans": frozenset(k for k in
                     zip(modalities, kept) if k[1] is not None)})
    table = _drop_dominated(pd.DataFrame(rows), sources)
    return table, pd.DataFrame(lost, columns=STATUS_COLUMNS)


def _source_files(preproc_dir: str | Path, raw: str, modality: str, sources: Sequence[str]) -> dict[str, str]:
    """Volume, mask and QC paths of every source of the raw scan ``raw``; FileNotFoundError
    when one is missing or empty (an empty file is an excluded scan's placeholder)."""
    derivatives = derivatives_of(preproc_dir, raw, alff=alff_wanted(sources))
    files = {}
    for source in sources_of(modality, sources):
        volume, mask, qc = source_columns(source)
        files |= {volume: derivatives[map_key(source)], mask: derivatives["mask"], qc: derivatives["qc"]}
    missing = [f for f in files.values() if not Path(f).is_file() or Path(f).stat().st_size == 0]
    if missing:
        raise FileNotFoundError(f"{raw}: missing or empty preprocessed file(s) {missing}, and the scan is not excluded")
    return files


def _drop_dominated(table: pd.DataFrame, sources: Sequence[str]) -> pd.DataFrame:
    """Without the samples whose scans are those of an earlier sample of their subject,
    or a strict subset of another's; then, per subject, the most complete samples first
    (stable, as discovery orders them)."""
    if table.empty:
        return table
    keep = np.ones(len(table), dtype=bool)
    for _, group in table.groupby("subject", sort=False):
        scans = list(group["_scans"])
        for position, (i, mine) in enumerate(zip(group.index, scans)):
            repeated = mine in scans[:position]
            contained = any(mine < other for other in scans)  # a strict subset
            keep[table.index.get_loc(i)] = not (repeated or contained)
    table = table[keep]
    order = table["_scans"].map(len)
    table = table.assign(_n=-order).sort_values(["subject", "_n"], kind="stable")
    return table.drop(columns=["_scans", "_n"]).reset_index(drop=True)


def collect(discovery_excluded: str | Path, samples_path: str | Path, statuses: Sequence[str | Path],
            preproc_dir: str | Path, sources: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(excluded, preprocessed samples): every exclusion (discovery's, the scans', the
    samples left with no source and the subjects left with no sample) and the usable
    samples. Whether enough subjects per class remain for the folds is checked by the
    splits step, whose message gives the counts."""
    excluded = pd.concat([read_table(discovery_excluded), *(read_table(s) for s in statuses)], ignore_index=True)[STATUS_COLUMNS]
    samples = read_table(samples_path)
    table, lost = preproc_samples(samples, preproc_dir, excluded, sources)
    kept = set(table["subject"]) if len(table) else set()
    gone = sorted(set(samples["subject"]) - kept)
    rows = [{"subject": s, "session": "", "path": "", "reason": "no usable sample left after preprocessing"} for s in gone]
    return pd.concat([excluded, lost, pd.DataFrame(rows, columns=STATUS_COLUMNS)], ignore_index=True), table


def read_samples(path: str | Path) -> pd.DataFrame:
    """A preprocessed samples table (TSV): sample, subject, a volume, mask and QC column
    per source (NaN where the sample lacks it), and the rest of discovery's columns."""
    header = pd.read_csv(path, sep="\t", nrows=0).columns
    # ids such as run "01" or session "0129" must not turn into numbers
    text = {c: str for c in header if c in ("sample", "subject", "label") or c.endswith(("_run", "_session"))}
    table = pd.read_csv(path, sep="\t", dtype=text)
    missing = {"sample", "subject"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: samples table lacks columns {sorted(missing)}")
    return table


def has_scan(samples: pd.DataFrame, source: str) -> np.ndarray:
    """(N,) bool: the rows of a samples table whose ``source`` column holds a path (not
    empty, not NaN)."""
    column = samples[source]
    return (column.notna() & (column.astype(str) != "")).to_numpy()
