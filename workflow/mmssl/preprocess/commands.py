"""The ``mmssl`` sub-commands of the brain-MRI rules (workflow/rules/preprocess.smk), file
in, file out: synthetic-bids, discover, preprocess-t1, preprocess-bold, collect,
landmarks, pack and qc.

Bad input, one policy: only :class:`~mmssl.preprocess.errors.BadInputError` (an error that
describes the input: unreadable file, implausible header, too few volumes, failed
registration, ...) excludes a scan. The job then succeeds with the reason in its status
file and empty placeholders for its image outputs, so the rest of the dataset goes on.
Any other exception is a bug or a broken installation: the job fails and Snakemake removes
its outputs; nothing is excluded silently.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from mmssl.io import write_tsv
from mmssl.paths import DERIVATIVES
from mmssl.preprocess.collect import collect, read_pairs, write_status
from mmssl.preprocess.errors import BadInputError
from mmssl.settings import settings_arg


def excluding_bad_input(source: str | Path, out: Mapping[str, str | Path], run: Callable[[], object]) -> int:
    """Run one scan's preprocessing (``run``), writing its status ``out["status"]``: header
    only on success; on BadInputError the reason, with every other output in ``out``
    replaced by an empty placeholder. Exit status 0 either way; other errors propagate."""
    from mmssl.preprocess.volumes import write_placeholders

    try:
        run()
    except BadInputError as error:
        print(f"excluded: {source}: {error.reason}", file=sys.stderr)
        write_placeholders([path for key, path in out.items() if key != "status"])
        write_status(out["status"], source, error.reason)
        return 0
    write_status(out["status"], source, None)
    return 0


def _outputs(args: argparse.Namespace, datatype: str) -> dict[str, Path]:
    return {key: getattr(args, f"out_{key.lower()}") for key in DERIVATIVES[datatype]}


def cmd_preprocess_t1(args: argparse.Namespace) -> int:
    from mmssl.preprocess.pipeline import preprocess_t1_files
    from mmssl.preprocess.settings import MriSettings

    settings = MriSettings.from_config(args.settings_json)
    out = _outputs(args, "anat")
    return excluding_bad_input(args.t1, out, lambda: preprocess_t1_files(args.t1, out, settings))


def cmd_preprocess_bold(args: argparse.Namespace) -> int:
    from mmssl.preprocess.falff import FalffSettings
    from mmssl.preprocess.pipeline import preprocess_bold_files
    from mmssl.preprocess.settings import MriSettings

    settings = MriSettings.from_config(args.settings_json)
    falff_settings = FalffSettings.from_config(args.falff_json)
    out = _outputs(args, "func")
    return excluding_bad_input(args.bold, out, lambda: preprocess_bold_files(args.bold, args.sidecar, out, settings, falff_settings))


def cmd_synthetic_bids(args: argparse.Namespace) -> int:
    from mmssl.preprocess.synthetic import make_synthetic_bids  # pulls nilearn; only this command needs it

    make_synthetic_bids(args.out, n_subjects=args.n_subjects, seed=args.seed, bad_inputs=args.bad_inputs)
    return 0


def cmd_discover(args: argparse.Namespace) -> int:
    from mmssl.preprocess.discovery import require_enough_subjects, run_discovery

    found = run_discovery(args.bids_dir, args.clinical, args.settings_json)
    write_tsv(found.excluded, args.out_excluded)  # first: the reasons are wanted when the next check fails
    require_enough_subjects(found, args.settings_json, args.dataset)
    write_tsv(found.subjects, args.out_subjects)
    write_tsv(found.pairs, args.out_pairs)
    print(f"{len(found.subjects)} subjects, {len(found.pairs)} pairs, {len(found.excluded)} exclusions "
          f"({args.out_excluded})", file=sys.stderr)
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    excluded, table = collect(args.discovery_excluded, args.pairs, args.statuses, args.preproc_dir)
    write_tsv(excluded, args.out_excluded)
    if table.empty:
        raise ValueError(f"no usable pair left after preprocessing; reasons are listed in {args.out_excluded}")
    write_tsv(table, args.out_pairs)
    print(f"{table['subject'].nunique()} subjects, {len(table)} pairs kept; {len(excluded)} exclusions", file=sys.stderr)
    return 0


def cmd_landmarks(args: argparse.Namespace) -> int:
    from mmssl.data.splits import read_split
    from mmssl.preprocess.pack import mask_column
    from mmssl.preprocess.standardize import landmarks_from_pairs, save_landmarks

    pairs = read_pairs(args.pairs)
    save_landmarks(landmarks_from_pairs(pairs, read_split(args.splits), args.modality, mask_column(pairs, args.modality)), args.out)
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from mmssl.data.splits import read_split
    from mmssl.preprocess.pack import pack_store
    from mmssl.preprocess.settings import MriSettings
    from mmssl.preprocess.standardize import load_landmarks

    settings = MriSettings.from_config(args.settings_json)
    landmarks = {"T1w": load_landmarks(args.landmarks_t1), "fALFF": load_landmarks(args.landmarks_falff)}
    pack_store(read_pairs(args.pairs), read_split(args.splits), landmarks, args.out_dir, dtype=settings.store_dtype,
               size=settings.grid.size)
    return 0


def cmd_qc(args: argparse.Namespace) -> int:
    """qc.tsv has a row per pair; each subject gets one montage, of its most-flagged pair."""
    from mmssl.preprocess.qc import qc_table, subject_montages, write_html, write_montage
    from mmssl.preprocess.settings import MriSettings

    settings = MriSettings.from_config(args.settings_json)
    pairs = read_pairs(args.pairs)
    rows = []
    for pair in pairs.to_dict("records"):
        metrics: dict[str, Any] = {"subject": pair["subject"], "sample": pair["sample"]}
        for col in ("T1w_qc", "fALFF_qc"):
            if isinstance(pair.get(col), str) and pair[col]:
                metrics |= json.loads(Path(pair[col]).read_text())
        rows.append(metrics)
    table = qc_table(rows, settings.qc)
    by_sample = pairs.set_index("sample")
    montages = {}
    for row in subject_montages(table).to_dict("records"):
        pair = by_sample.loc[row["sample"]]
        t1 = np.asarray(nib.load(pair["T1w"]).dataobj, dtype=np.float32)
        mask = np.asarray(nib.load(pair["mask"]).dataobj) > 0
        falff = np.asarray(nib.load(pair["fALFF"]).dataobj, dtype=np.float32) if pair.get("fALFF") else None
        png = Path(args.montage_dir) / f"sub-{row['subject']}.png"
        write_montage(t1, mask, falff, png, title=f"sub-{row['subject']}  (pair {row['sample']})")
        montages[row["subject"]] = str(png)
    table["montage"] = table["subject"].map(montages)
    write_tsv(table, args.out_tsv)
    write_html(table, args.out_html)
    return 0


def _add_outputs(parser: argparse.ArgumentParser, datatype: str) -> None:
    """--out-<key> for every derivative of the datatype (mmssl.paths.DERIVATIVES)."""
    for key in DERIVATIVES[datatype]:
        flag = key.lower().replace("_", "-")
        parser.add_argument(f"--out-{flag}", dest=f"out_{key.lower()}", type=Path, required=True,
                            help=f"derivative '{key}' (BIDS-derivatives name from mmssl.paths)")


def _paths(parser: argparse.ArgumentParser, *flags: str) -> None:
    """Required file arguments (each a Path)."""
    for flag in flags:
        parser.add_argument(flag, required=True, type=Path)


def _settings(parser: argparse.ArgumentParser, section: str, flag: str = "--settings-json") -> None:
    parser.add_argument(flag, required=True, type=settings_arg, help=f"the {section} config section (JSON or a .json file)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the brain-MRI sub-commands; each sets ``func`` returning an exit status."""
    p = sub.add_parser("synthetic-bids", help="write the synthetic OASIS-3-shaped BIDS dataset")
    p.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    p.add_argument("--n-subjects", required=True, type=int)
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--bad-inputs", action="store_true", help="add defective subjects (derivatives/truth/bad_inputs.tsv)")
    p.set_defaults(func=cmd_synthetic_bids)

    p = sub.add_parser("discover", help="find T1w/BOLD runs, match clinical visits, write subjects/pairs/excluded TSVs")
    _paths(p, "--bids-dir", "--clinical", "--out-subjects", "--out-pairs", "--out-excluded")
    _settings(p, "discover")
    p.add_argument("--dataset", required=True, help="dataset name, for messages")
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("preprocess-t1", help="one T1w: header check, brain mask, affine to MNI, 3 mm 64^3")
    _paths(p, "--t1")
    _settings(p, "preprocess")
    _add_outputs(p, "anat")
    p.set_defaults(func=cmd_preprocess_t1)

    p = sub.add_parser("preprocess-bold", help="one BOLD run: header check, fALFF, mean EPI to MNI, 3 mm 64^3")
    _paths(p, "--bold")
    p.add_argument("--sidecar", type=Path, help="its JSON sidecar (none: TR from the header)")
    _settings(p, "preprocess")
    _settings(p, "falff", "--falff-json")
    _add_outputs(p, "func")
    p.set_defaults(func=cmd_preprocess_bold)

    p = sub.add_parser("collect", help="excluded.tsv and the pairs of preprocessed volumes")
    _paths(p, "--discovery-excluded", "--pairs", "--out-excluded", "--out-pairs")
    p.add_argument("--statuses", nargs="*", default=[], type=Path, help="every scan's status TSV")
    p.add_argument("--preproc-dir", required=True, type=Path, help="results/{dataset}/preproc (derivative names: mmssl.paths)")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("landmarks", help="histogram landmarks of one modality from one fold's training subjects")
    _paths(p, "--pairs", "--splits", "--out")
    p.add_argument("--modality", required=True, choices=("T1w", "fALFF"))
    p.set_defaults(func=cmd_landmarks)

    p = sub.add_parser("pack", help="standardise every pair with the fold's landmarks into a packed store")
    _paths(p, "--pairs", "--splits", "--landmarks-t1", "--landmarks-falff", "--out-dir")
    _settings(p, "preprocess")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("qc", help="qc.tsv, one montage PNG per subject, one HTML page")
    _paths(p, "--pairs", "--out-tsv", "--out-html", "--montage-dir")
    _settings(p, "preprocess")
    p.set_defaults(func=cmd_qc)
