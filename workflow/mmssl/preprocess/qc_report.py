"""The ``qc`` step's file-in/file-out entry point: the preprocessed samples' QC metrics
table (qc.tsv), one montage PNG per subject and one HTML page
(:mod:`mmssl.preprocess.qc` holds the pieces)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from mmssl.bids.collect import read_samples, read_table, source_columns
from mmssl.io import write_tsv
from mmssl.preprocess.qc import QcThresholds, excluded_flags, qc_table, subject_montages, write_html, write_montage


def write_qc(samples_tsv: Path, sources: Sequence[str], thresholds: QcThresholds, out_tsv: Path, out_html: Path,
             montage_dir: Path, excluded_tsv: Path | None = None) -> None:
    """qc.tsv has a row per sample; each subject gets one montage, of its most-flagged
    sample, with a row per source that sample has. ``excluded_tsv``: excluded.tsv, listed
    on the page and its subjects flagged."""
    # the store's has_<source> convention for the table's presence columns
    from mmssl.bids.collect import has_scan
    from mmssl.modalities import present_column

    samples = read_samples(samples_tsv)
    has = {source: has_scan(samples, source) for source in sources}
    rows = []
    for i, sample in enumerate(samples.to_dict("records")):
        present = [s for s in sources if has[s][i]]
        metrics: dict[str, Any] = {"subject": sample["subject"], "sample": sample["sample"], "sources": ",".join(present),
                                   **{present_column(s): int(has[s][i]) for s in sources}}
        # one QC file per scan: fALFF and ALFF of one BOLD run share theirs
        for qc_file in dict.fromkeys(sample[source_columns(s)[2]] for s in present):
            metrics |= json.loads(Path(qc_file).read_text())
        rows.append(metrics)
    table = qc_table(rows, thresholds)
    by_sample = samples.set_index("sample")
    montages = {}
    for row in subject_montages(table).to_dict("records"):
        sample = by_sample.loc[row["sample"]]
        panels = []
        for source in (s for s in sources if row[present_column(s)]):
            volume, mask, _ = source_columns(source)
            panels.append((source, np.asarray(nib.load(sample[volume]).dataobj, dtype=np.float32),
                           np.asarray(nib.load(sample[mask]).dataobj) > 0))
        png = Path(montage_dir) / f"sub-{row['subject']}.png"
        write_montage(panels, png, title=f"sub-{row['subject']}  (sample {row['sample']})")
        montages[row["subject"]] = str(png)
    table["montage"] = table["subject"].map(montages)
    excluded = read_table(excluded_tsv) if excluded_tsv else None
    table = excluded_flags(table, excluded)
    write_tsv(table, out_tsv)
    write_html(table, out_html, excluded=excluded)
