"""Per-scan jobs of the MRI branch and the step that collects them.

Each T1w and each BOLD run is one Snakemake job whose declared output is a one-row
status TSV (subject, session, path, reason; header only when the scan is fine). The
images are written under BIDS-derivatives names (``mri_commands.derivative_paths``)
*before* the status, so a status file means the job finished; a scan with bad input
(corrupt file, 3D where 4D is expected, too few volumes, missing TR, NaNs, failed
registration) gets its reason in the status and the workflow goes on without it.
``collect`` merges discovery's exclusions with the scans', drops the pairs that lost a
scan, and writes ``excluded.tsv`` and the pairs of preprocessed volumes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from mmssl.preprocess.bids import EXCLUDED_COLUMNS, exclusion_row
from mmssl.preprocess.errors import BadInputError

STATUS_COLUMNS = list(EXCLUDED_COLUMNS)


def scan_stem(path: str | Path) -> str:
    """sub-X_ses-Y_run-01_T1w.nii.gz -> sub-X_ses-Y_run-01_T1w (the job's wildcard)."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    raise ValueError(f"{path}: not a NIfTI file name")


def native_bold_paths(mni_falff: Path) -> dict[str, Path]:
    """Native-space fALFF products beside the MNI ones (no space entity = native)."""
    stem = mni_falff.name.split("_space-")[0]
    folder = mni_falff.parent
    return {"falff": folder / f"{stem}_desc-falff_boldmap.nii.gz", "mask": folder / f"{stem}_desc-brain_mask.nii.gz",
            "mean": folder / f"{stem}_desc-mean_boldref.nii.gz",
            "confounds": folder / f"{stem}_desc-confounds_timeseries.tsv"}


def write_status(path: Path, rows: list[dict]) -> None:
    from mmssl.preprocess.discovery_commands import write_tsv_atomic

    write_tsv_atomic(pd.DataFrame(rows, columns=STATUS_COLUMNS), path)


def _guard(run, source: str, status: Path) -> int:
    from mmssl.preprocess.masking import FslNotFoundError  # imported here: the rules import this module

    try:
        run()
    except FslNotFoundError:
        raise  # a missing FSL is the installation's fault, not the scan's: stop, exclude nothing
    except BadInputError as error:
        print(f"excluded: {error}", file=sys.stderr)
        write_status(status, [exclusion_row(source, error.reason)])
        return 0
    except (RuntimeError, ValueError) as error:  # e.g. a registration that cannot converge
        print(f"excluded after failure: {error}", file=sys.stderr)
        write_status(status, [exclusion_row(source, f"preprocessing failed: {error}")])
        return 0
    write_status(status, [])
    return 0


def preprocess_t1(args: argparse.Namespace) -> int:
    """Brain-masked T1w on the 3 mm 64³ MNI grid, its mask, transform and QC JSON."""
    from mmssl.preprocess import mri_commands as mc

    out = mc.derivative_paths(args.preproc_dir, args.t1)
    settings = mc.load_settings(json.dumps(args.settings_json.get("preprocess", {})))

    def run():
        result = mc.t1_to_mni(mc.load_volume(args.t1), settings)
        mc.save_nifti(result.t1, out["T1w"])
        mc.save_nifti(result.mask, out["mask"], np.uint8)
        mc.save_xfm(result.registration.fixed_to_moving, out["xfm"])
        mc.save_json({"backend": settings.backend, "mask_volume_ml": result.mask_volume_ml,
                      "similarity_t1": result.registration.similarity}, out["qc"])

    return _guard(run, str(args.t1), args.status)


def preprocess_bold(args: argparse.Namespace) -> int:
    """fALFF in native space (then kept as a derivative), moved to the 3 mm 64³ MNI grid."""
    from mmssl.preprocess import mri_commands as mc
    from mmssl.preprocess.falff import FalffSettings, falff_file

    out = mc.derivative_paths(args.preproc_dir, args.bold)
    native = native_bold_paths(out["fALFF"])
    settings = mc.load_settings(json.dumps(args.settings_json.get("preprocess", {})))
    falff_settings = FalffSettings.from_mapping(args.settings_json.get("falff", {}))

    def run():
        native["falff"].parent.mkdir(parents=True, exist_ok=True)
        with _bold_series(args.bold, settings.motion_correction, native["confounds"],
                          falff_settings.dummy_volumes) as (bold, motion):
            falff_file(bold, args.sidecar or None, native["falff"], native["mask"], native["mean"], falff_settings)
        result = mc.falff_to_mni(mc._load_map(str(native["falff"])), mc.load_volume(native["mean"]),
                                 mc._load_mask(str(native["mask"])), settings)
        mc.save_nifti(result.falff, out["fALFF"])
        mc.save_nifti(result.mask, out["mask"], np.uint8)
        mc.save_xfm(result.registration.fixed_to_moving, out["xfm"])
        mc.save_json({"similarity_epi": result.registration.similarity,
                      "falff_mean_in_brain": result.falff_mean_in_brain, **motion}, out["qc"])

    return _guard(run, str(args.bold), args.status)


@contextmanager
def _bold_series(bold: str, motion_correction: bool, confounds: Path, dummy_volumes: int) -> Iterator[tuple[str, dict]]:
    """The series fALFF reads: the run itself, or its mcflirt-corrected copy (motion
    parameters and FD then saved to ``confounds``; the yielded dict holds mean/max FD
    over the volumes after ``dummy_volumes``).
    Bad input found in the corrected copy is reported under the original file name."""
    if not motion_correction:
        yield bold, {}
        return
    from mmssl.preprocess.mri_commands import save_tsv
    from mmssl.preprocess.motion import confounds_table, mcflirt_corrected, motion_summary

    with mcflirt_corrected(bold) as (corrected, params):
        save_tsv(confounds_table(params), confounds)
        try:
            yield str(corrected), motion_summary(params, dummy_volumes)
        except BadInputError as error:
            raise BadInputError(bold, error.reason) from error


def collect(args: argparse.Namespace) -> int:
    """excluded.tsv (every reason, discovery and preprocessing) and the preprocessed pairs.
    Whether enough subjects per class remain for the folds is checked by the splits step,
    whose message gives the counts."""
    from mmssl.preprocess import mri_commands as mc
    from mmssl.preprocess.discovery_commands import write_tsv_atomic

    tables = [pd.read_csv(args.discovery_excluded, sep="\t", dtype=str, keep_default_na=False)]
    tables += [pd.read_csv(s, sep="\t", dtype=str, keep_default_na=False) for s in args.statuses]
    excluded = pd.concat(tables, ignore_index=True)[STATUS_COLUMNS]
    pairs = pd.read_csv(args.pairs, sep="\t", dtype=str, keep_default_na=False)
    table = mc.preproc_pairs(pairs, args.preproc_dir, excluded)
    lost = pairs[~pairs["pair_id"].isin(set(table["sample"]) if len(table) else set())]
    lost_subjects = sorted(set(lost["subject"]) - set(table["subject"] if len(table) else []))
    rows = [{"subject": s, "session": "", "path": "", "reason": "no usable pair left after preprocessing"}
            for s in lost_subjects]
    excluded = pd.concat([excluded, pd.DataFrame(rows, columns=STATUS_COLUMNS)], ignore_index=True)
    write_tsv_atomic(excluded, args.out_excluded)
    if table.empty:
        raise ValueError(f"no usable pair left after preprocessing; reasons are listed in {args.out_excluded}")
    write_tsv_atomic(table, args.out_pairs)
    print(f"{table['subject'].nunique()} subjects, {len(table)} pairs kept; {len(excluded)} exclusions", file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    from mmssl.cli import json_arg, path_arg

    p = sub.add_parser("preprocess-t1", help="one T1w: brain mask + affine to MNI + 3 mm 64^3 (status TSV)")
    p.add_argument("--t1", required=True)
    p.add_argument("--preproc-dir", required=True, type=path_arg)
    p.add_argument("--settings-json", type=json_arg, default={})
    p.add_argument("--status", required=True, type=path_arg)
    p.set_defaults(func=preprocess_t1)

    p = sub.add_parser("preprocess-bold", help="one BOLD run: fALFF, mean EPI to MNI, 3 mm 64^3 (status TSV)")
    p.add_argument("--bold", required=True)
    p.add_argument("--sidecar", default="")
    p.add_argument("--preproc-dir", required=True, type=path_arg)
    p.add_argument("--settings-json", type=json_arg, default={})
    p.add_argument("--status", required=True, type=path_arg)
    p.set_defaults(func=preprocess_bold)

    p = sub.add_parser("collect", help="excluded.tsv and the pairs of preprocessed volumes")
    p.add_argument("--discovery-excluded", required=True, type=path_arg)
    p.add_argument("--pairs", required=True, type=path_arg)
    p.add_argument("--statuses", nargs="*", default=[], type=path_arg)
    p.add_argument("--preproc-dir", required=True, type=path_arg)
    p.add_argument("--out-excluded", required=True, type=path_arg)
    p.add_argument("--out-pairs", required=True, type=path_arg)
    p.set_defaults(func=collect)
