"""File-in/file-out entry points of the BIDS input steps (the ``discover`` and ``collect``
sub-commands, :mod:`mmssl.bids.commands`): run the step, write its tables, and say on
stderr (the rule's log) what was kept and what was excluded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mmssl.bids.collect import collect
from mmssl.io import write_tsv


def keep_exclusions(excluded: Any, log_path: Path | None) -> None:
    """A copy of the exclusions in the job's log folder (a declared log: Snakemake deletes a
    failed job's outputs, excluded.tsv among them, but keeps its logs), so the reasons
    survive the failure they explain; its path goes to stderr."""
    if log_path is not None:
        write_tsv(excluded, log_path)
        print(f"{len(excluded)} exclusion(s) with their reasons: {log_path}", file=sys.stderr)


def write_discovery(bids_dir: Path, clinical: Path | None, settings: dict[str, Any], sources: list[str], dataset: str,
                    out_subjects: Path, out_samples: Path, out_excluded: Path, log_excluded: Path | None = None,
                    out_description: Path | None = None) -> None:
    """Discovery of ``bids_dir`` (``settings``: the discover section, the BIDS-App flags
    already applied): excluded.tsv (and its log copy) first, so a dataset with nothing
    usable still says why; then subjects.tsv, samples.tsv and, when asked, the
    derivatives' dataset_description.json."""
    from mmssl.bids.derivatives import write_dataset_description
    from mmssl.bids.discovery import require_usable, run_discovery

    found = run_discovery(bids_dir, clinical, settings, sources)
    write_tsv(found.excluded, out_excluded)
    keep_exclusions(found.excluded, log_excluded)
    require_usable(found, sources, settings, dataset)
    write_tsv(found.subjects, out_subjects)
    write_tsv(found.samples, out_samples)
    if out_description:
        write_dataset_description(out_description, bids_dir, dataset)
    print(f"{len(found.subjects)} subjects, {len(found.samples)} samples, {len(found.excluded)} exclusions "
          f"({out_excluded})", file=sys.stderr)


def write_collected(discovery_excluded: Path, samples: Path, statuses: list[Path], preproc_dir: Path,
                    sources: list[str], out_excluded: Path, out_samples: Path, log_excluded: Path | None = None) -> None:
    """excluded.tsv (discovery's exclusions and every scan that preprocessing excluded) and
    the samples of preprocessed volumes; a ValueError when no sample is left."""
    excluded, table = collect(discovery_excluded, samples, statuses, preproc_dir, sources)
    write_tsv(excluded, out_excluded)
    keep_exclusions(excluded, log_excluded)
    if table.empty:
        raise ValueError(f"no usable sample left after preprocessing; every exclusion and its reason is in {log_excluded}")
    write_tsv(table, out_samples)
    counts = ", ".join(f"{s} {int((table[s].fillna('') != '').sum())}" for s in sources)
    print(f"{table['subject'].nunique()} subjects, {len(table)} samples kept ({counts}); {len(excluded)} exclusions",
          file=sys.stderr)
