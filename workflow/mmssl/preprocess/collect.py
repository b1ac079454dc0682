"""Per-scan status files, and the step that collects them.

Each preprocessing job writes a status TSV (columns :data:`STATUS_COLUMNS`): header only
when the scan was preprocessed, one row with the reason when it was excluded.
:func:`collect` merges discovery's exclusions with the scans', drops the pairs that lost a
scan, and returns ``excluded.tsv`` and the table of preprocessed pairs that landmarks,
pack and QC read (derivative paths from :func:`mmssl.paths.derivatives_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mmssl.io import write_tsv
from mmssl.paths import derivatives_of
from mmssl.preprocess.bids import EXCLUDED_COLUMNS, exclusion_row

STATUS_COLUMNS = list(EXCLUDED_COLUMNS)
# preprocessed-pairs column -> (which scan of the pair, derivative key)
PAIR_FILES = {"T1w": ("t1_path", "T1w"), "mask": ("t1_path", "mask"), "fALFF": ("bold_path", "fALFF"),
              "mask_fALFF": ("bold_path", "mask"), "T1w_qc": ("t1_path", "qc"), "fALFF_qc": ("bold_path", "qc")}


def write_status(path: str | Path, source: str | Path, reason: str | None) -> None:
    """The status of one scan: header only (fine), or one row naming ``source`` and ``reason``."""
    rows = [] if reason is None else [exclusion_row(source, reason)]
    write_tsv(pd.DataFrame(rows, columns=STATUS_COLUMNS), path)


def read_table(path: str | Path) -> pd.DataFrame:
    """A TSV of text cells (ids such as run ``01`` or session ``0129`` stay text; "" for empty)."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def preproc_pairs(pairs: pd.DataFrame, preproc_dir: str | Path, excluded: pd.DataFrame) -> pd.DataFrame:
    """The pairs table of landmarks / pack / qc from discovery's pairs (pair_id, subject,
    t1_path, bold_path, label, ...): sample, subject, the :data:`PAIR_FILES` columns, plus
    discovery's non-path columns. A pair whose T1w or BOLD input is listed in ``excluded``
    (column ``path``) is dropped; any other pair whose outputs are missing is an error (a
    rule did not run), naming the file."""
    for col in ("pair_id", "subject", "t1_path", "bold_path"):
        if col not in pairs.columns:
            raise ValueError(f"discovery pairs table lacks column {col!r}; has {list(pairs.columns)}")
    dropped = set(excluded["path"].astype(str))
    rows = []
    for pair in pairs.to_dict("records"):
        if str(pair["t1_path"]) in dropped or str(pair["bold_path"]) in dropped:
            continue
        scans = {col: derivatives_of(preproc_dir, pair[col]) for col in ("t1_path", "bold_path")}
        files = {column: scans[scan][key] for column, (scan, key) in PAIR_FILES.items()}
        missing = [f for f in files.values() if not Path(f).is_file() or Path(f).stat().st_size == 0]
        if missing:
            raise FileNotFoundError(f"pair {pair['pair_id']}: missing or empty preprocessed file(s) {missing}, "
                                    "and its scans are not excluded")
        rest = {k: v for k, v in pair.items() if k not in ("pair_id", "subject") and not k.endswith(("_path", "_sidecar"))}
        rows.append({"sample": pair["pair_id"], "subject": str(pair["subject"]), **files, **rest})
    return pd.DataFrame(rows)


def collect(discovery_excluded: str | Path, pairs_path: str | Path, statuses: Sequence[str | Path],
            preproc_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(excluded, preprocessed pairs): every exclusion (discovery's, the scans', and the
    subjects left with no pair) and the usable pairs. Whether enough subjects per class
    remain for the folds is checked by the splits step, whose message gives the counts."""
    excluded = pd.concat([read_table(discovery_excluded), *(read_table(s) for s in statuses)], ignore_index=True)[STATUS_COLUMNS]
    pairs = read_table(pairs_path)
    table = preproc_pairs(pairs, preproc_dir, excluded)
    kept = set(table["subject"]) if len(table) else set()
    lost = sorted(set(pairs["subject"]) - kept)
    rows = [{"subject": s, "session": "", "path": "", "reason": "no usable pair left after preprocessing"} for s in lost]
    return pd.concat([excluded, pd.DataFrame(rows, columns=STATUS_COLUMNS)], ignore_index=True), table


def read_pairs(path: str | Path) -> pd.DataFrame:
    """The preprocessed pairs table (TSV): sample, subject, T1w, fALFF, mask[, mask_fALFF, T1w_qc, fALFF_qc, ...]."""
    header = pd.read_csv(path, sep="\t", nrows=0).columns
    # ids such as run "01" or session "0129" must not turn into numbers
    text = {c: str for c in header if c in ("sample", "subject", "label") or c.endswith(("_run", "_session"))}
    table = pd.read_csv(path, sep="\t", dtype=text)
    missing = {"sample", "subject"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: pairs table lacks columns {sorted(missing)}")
    return table
