"""The ``mmssl`` sub-commands of the brain-MRI rules (workflow/rules/preprocess.smk), file
in, file out: synthetic-bids, discover, preprocess-anat, preprocess-bold, collect,
landmarks, pack and qc.

Bad input, one policy: only :class:`~mmssl.errors.BadInputError` (an error that
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
from mmssl.paths import ALFF_DERIVATIVES, SOURCES, STRUCTURAL, derivative_specs, scan_prefix
from mmssl.bids.collect import collect, read_samples, read_table, source_columns, write_status
from mmssl.errors import BadInputError
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


def _outputs(args: argparse.Namespace, suffix: str) -> dict[str, Path]:
    """The --out-<key> paths given (every derivative of ``suffix``; ALFF's only when given)."""
    paths = {key: getattr(args, f"out_{key.lower()}", None) for key in derivative_specs(suffix, alff=True)}
    return {key: path for key, path in paths.items() if path is not None}


def cmd_preprocess_anat(args: argparse.Namespace) -> int:
    from mmssl.preprocess.pipeline import preprocess_anat_files
    from mmssl.preprocess.settings import MriSettings

    settings = MriSettings.from_config(args.settings_json)
    suffix, _ = scan_prefix(args.image)
    if suffix != args.suffix:
        raise ValueError(f"--image {args.image} is a BIDS {suffix} image, not the --suffix {args.suffix} given")
    out = _outputs(args, args.suffix)
    return excluding_bad_input(args.image, out, lambda: preprocess_anat_files(args.image, args.suffix, out, settings))


def cmd_preprocess_bold(args: argparse.Namespace) -> int:
    from mmssl.preprocess.falff import FalffSettings, GivenTR
    from mmssl.preprocess.pipeline import preprocess_bold_files
    from mmssl.preprocess.settings import MriSettings

    settings = MriSettings.from_config(args.settings_json)
    falff_settings = FalffSettings.from_config(args.falff_json)
    out = _outputs(args, "bold")
    given = [key for key in ALFF_DERIVATIVES if key in out]
    if given and len(given) != len(ALFF_DERIVATIVES):
        raise ValueError(f"preprocess-bold: give all of {['--out-' + k.lower().replace('_', '-') for k in ALFF_DERIVATIVES]} or none")
    tr = GivenTR(args.tr, args.tr_source or "the metadata") if args.tr is not None else None
    return excluding_bad_input(args.bold, out, lambda: preprocess_bold_files(args.bold, tr, out, settings, falff_settings))


def cmd_synthetic_bids(args: argparse.Namespace) -> int:
    from mmssl.data.synthetic import make_synthetic_bids  # pulls nilearn; only this command needs it

    make_synthetic_bids(args.out, n_subjects=args.n_subjects, seed=args.seed, bad_inputs=args.bad_inputs)
    return 0


def cmd_discover(args: argparse.Namespace) -> int:
    from mmssl.bids.derivatives import write_dataset_description
    from mmssl.bids.discovery import require_usable, run_discovery

    settings = dict(args.settings_json)
    for key in ("participant_label", "exclude_participant_label"):  # the BIDS-App flags override the config keys
        if getattr(args, key) is not None:
            settings[key] = [label.removeprefix("sub-") for label in getattr(args, key)]
    found = run_discovery(args.bids_dir, args.clinical, settings, args.sources)
    write_tsv(found.excluded, args.out_excluded)
    keep_exclusions(found.excluded, args.log_excluded)
    require_usable(found, args.sources, settings, args.dataset)
    write_tsv(found.subjects, args.out_subjects)
    write_tsv(found.samples, args.out_samples)
    if args.out_description:
        write_dataset_description(args.out_description, args.bids_dir, args.dataset)
    print(f"{len(found.subjects)} subjects, {len(found.samples)} samples, {len(found.excluded)} exclusions "
          f"({args.out_excluded})", file=sys.stderr)
    return 0


def keep_exclusions(excluded: Any, log_path: Path | None) -> None:
    """A copy of the exclusions in the job's log folder (a declared log: Snakemake deletes a
    failed job's outputs, excluded.tsv among them, but keeps its logs), so the reasons
    survive the failure they explain; its path goes to stderr."""
    if log_path is not None:
        write_tsv(excluded, log_path)
        print(f"{len(excluded)} exclusion(s) with their reasons: {log_path}", file=sys.stderr)


def cmd_collect(args: argparse.Namespace) -> int:
    excluded, table = collect(args.discovery_excluded, args.samples, args.statuses, args.preproc_dir, args.sources)
    write_tsv(excluded, args.out_excluded)
    keep_exclusions(excluded, args.log_excluded)
    if table.empty:
        raise ValueError(f"no usable sample left after preprocessing; every exclusion and its reason is in {args.log_excluded}")
    write_tsv(table, args.out_samples)
    counts = ", ".join(f"{s} {int((table[s].fillna('') != '').sum())}" for s in args.sources)
    print(f"{table['subject'].nunique()} subjects, {len(table)} samples kept ({counts}); {len(excluded)} exclusions",
          file=sys.stderr)
    return 0


def cmd_landmarks(args: argparse.Namespace) -> int:
    from mmssl.data.splits import read_split
    from mmssl.data.pack import mask_column
    from mmssl.data.standardize import landmarks_from_samples, save_landmarks

    samples = read_samples(args.samples)
    landmarks = landmarks_from_samples(samples, read_split(args.splits), args.modality, mask_column(args.modality))
    save_landmarks(landmarks, args.out)
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from mmssl.data.splits import read_split
    from mmssl.data.pack import pack_store
    from mmssl.preprocess.settings import MriSettings
    from mmssl.data.standardize import load_landmarks

    settings = MriSettings.from_config(args.settings_json)
    given = dict(args.landmarks)
    if sorted(given) != sorted(args.sources):
        raise ValueError(f"--landmarks names sources {sorted(given)}; --sources are {list(args.sources)}: give one file each")
    landmarks = {source: load_landmarks(path) for source, path in given.items()}
    pack_store(read_samples(args.samples), read_split(args.splits), landmarks, args.out_dir, args.sources,
               dtype=settings.store_dtype, size=settings.grid.size)
    return 0


def cmd_qc(args: argparse.Namespace) -> int:
    """qc.tsv has a row per sample; each subject gets one montage, of its most-flagged
    sample, with a row per source that sample has."""
    from mmssl.data.store import present_column
    from mmssl.data.pack import presence
    from mmssl.preprocess.qc import excluded_flags, qc_table, subject_montages, write_html, write_montage
    from mmssl.preprocess.settings import MriSettings

    settings = MriSettings.from_config(args.settings_json)
    samples = read_samples(args.samples)
    has = {source: presence(samples, source) for source in args.sources}
    rows = []
    for i, sample in enumerate(samples.to_dict("records")):
        present = [s for s in args.sources if has[s][i]]
        metrics: dict[str, Any] = {"subject": sample["subject"], "sample": sample["sample"], "sources": ",".join(present),
                                   **{present_column(s): int(has[s][i]) for s in args.sources}}
        # one QC file per scan: fALFF and ALFF of one BOLD run share theirs
        for qc_file in dict.fromkeys(sample[source_columns(s)[2]] for s in present):
            metrics |= json.loads(Path(qc_file).read_text())
        rows.append(metrics)
    table = qc_table(rows, settings.qc)
    by_sample = samples.set_index("sample")
    montages = {}
    for row in subject_montages(table).to_dict("records"):
        sample = by_sample.loc[row["sample"]]
        panels = []
        for source in (s for s in args.sources if row[present_column(s)]):
            volume, mask, _ = source_columns(source)
            panels.append((source, np.asarray(nib.load(sample[volume]).dataobj, dtype=np.float32),
                           np.asarray(nib.load(sample[mask]).dataobj) > 0))
        png = Path(args.montage_dir) / f"sub-{row['subject']}.png"
        write_montage(panels, png, title=f"sub-{row['subject']}  (sample {row['sample']})")
        montages[row["subject"]] = str(png)
    table["montage"] = table["subject"].map(montages)
    excluded = read_table(args.excluded) if args.excluded else None
    table = excluded_flags(table, excluded)
    write_tsv(table, args.out_tsv)
    write_html(table, args.out_html, excluded=excluded)
    return 0


def _add_outputs(parser: argparse.ArgumentParser, suffix: str) -> None:
    """--out-<key> for every derivative of a scan of raw ``suffix`` (mmssl.paths.derivative_specs);
    for a BOLD run, ALFF's are optional (given when the dataset's sources include ALFF)."""
    optional = ALFF_DERIVATIVES if suffix == "bold" else {}
    for key in derivative_specs(suffix, alff=True):
        flag = key.lower().replace("_", "-")
        parser.add_argument(f"--out-{flag}", dest=f"out_{key.lower()}", type=Path, required=key not in optional,
                            help=f"derivative '{key}' (BIDS-derivatives name from mmssl.paths)")


def _source_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sources", nargs="+", required=True, choices=SOURCES, metavar="SOURCE",
                        help=f"the dataset's sources, in order (config key sources; each one of {', '.join(SOURCES)})")


def _source_file(text: str) -> tuple[str, Path]:
    """``SOURCE=PATH`` -> (source, path)."""
    source, sep, path = text.partition("=")
    if not sep or source not in SOURCES or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SOURCE=PATH with SOURCE one of {', '.join(SOURCES)}")
    return source, Path(path)


def _log_excluded(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-excluded", type=Path,
                        help="a copy of the exclusions that survives a failed job (the rule's log)")


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

    p = sub.add_parser("discover", help="find the sources' runs, match clinical visits, write subjects/samples/excluded TSVs")
    _paths(p, "--bids-dir", "--out-subjects", "--out-samples", "--out-excluded")
    p.add_argument("--clinical", type=Path, help="a clinical visit table (OASIS-3 UDS-like); without it labels come "
                   "from discover.participants (participants.tsv)")
    p.add_argument("--participant-label", nargs="+", metavar="LABEL",
                   help="BIDS-App: only these subjects (overrides discover.participant_label)")
    p.add_argument("--exclude-participant-label", nargs="+", metavar="LABEL",
                   help="BIDS-App: leave these subjects out (overrides discover.exclude_participant_label)")
    p.add_argument("--out-description", type=Path,
                   help="the derivatives' dataset_description.json (GeneratedBy, SourceDatasets)")
    _log_excluded(p)
    _settings(p, "discover")
    _source_list(p)
    p.add_argument("--dataset", required=True, help="dataset name, for messages")
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("preprocess-anat", help="one T1w, T2w or FLAIR: header check, brain mask, affine to MNI, 3 mm 64^3")
    _paths(p, "--image")
    p.add_argument("--suffix", required=True, choices=STRUCTURAL, help="its BIDS suffix (header limits preprocess.header.<suffix>)")
    _settings(p, "preprocess")
    _add_outputs(p, "T1w")  # the same keys for every structural suffix
    p.set_defaults(func=cmd_preprocess_anat)

    p = sub.add_parser("preprocess-bold", help="one BOLD run: header check, fALFF (and ALFF), mean EPI to MNI, 3 mm 64^3")
    _paths(p, "--bold")
    p.add_argument("--tr", type=float, help="its RepetitionTime (s), resolved by discovery from the sidecars by BIDS "
                   "inheritance (samples.tsv bold_RepetitionTime; none: the header's, with a warning)")
    p.add_argument("--tr-source", help="the sidecar that gave --tr, for messages")
    _settings(p, "preprocess")
    _settings(p, "falff", "--falff-json")
    _add_outputs(p, "bold")
    p.set_defaults(func=cmd_preprocess_bold)

    p = sub.add_parser("collect", help="excluded.tsv and the samples of preprocessed volumes")
    _paths(p, "--discovery-excluded", "--samples", "--out-excluded", "--out-samples")
    p.add_argument("--statuses", nargs="*", default=[], type=Path, help="every scan's status TSV")
    p.add_argument("--preproc-dir", required=True, type=Path, help="results/{dataset}/preproc (derivative names: mmssl.paths)")
    _source_list(p)
    _log_excluded(p)
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("landmarks", help="histogram landmarks of one source from one fold's training subjects that have it")
    _paths(p, "--samples", "--splits", "--out")
    p.add_argument("--modality", required=True, choices=SOURCES, help="the source")
    p.set_defaults(func=cmd_landmarks)

    p = sub.add_parser("pack", help="standardise every sample with the fold's landmarks into a packed store")
    _paths(p, "--samples", "--splits", "--out-dir")
    _source_list(p)
    p.add_argument("--landmarks", nargs="+", required=True, type=_source_file, metavar="SOURCE=PATH",
                   help="each source's landmarks file")
    _settings(p, "preprocess")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("qc", help="qc.tsv, one montage PNG per subject, one HTML page")
    _paths(p, "--samples", "--out-tsv", "--out-html", "--montage-dir")
    p.add_argument("--excluded", type=Path, help="excluded.tsv: listed on the page, and its subjects flagged")
    _source_list(p)
    _settings(p, "preprocess")
    p.set_defaults(func=cmd_qc)
