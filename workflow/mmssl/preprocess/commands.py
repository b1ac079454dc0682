"""The preprocessing stage's sub-commands (workflow/rules/preprocess.smk), file in, file
out: ``preprocess-anat`` and ``preprocess-bold`` (one scan each, under the bad-input
policy of :mod:`mmssl.preprocess.steps`) and ``qc`` (:mod:`mmssl.preprocess.qc_report`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmssl.arguments import add_paths, add_settings, add_source_list
from mmssl.paths import ALFF_DERIVATIVES, STRUCTURAL, derivative_specs


def _outputs(args: argparse.Namespace, suffix: str) -> dict[str, Path]:
    """The --out-<key> paths given (every derivative of ``suffix``; ALFF's only when given)."""
    paths = {key: getattr(args, f"out_{key.lower()}", None) for key in derivative_specs(suffix, alff=True)}
    return {key: path for key, path in paths.items() if path is not None}


def cmd_preprocess_anat(args: argparse.Namespace) -> int:
    from mmssl.preprocess.settings import MriSettings
    from mmssl.preprocess.steps import preprocess_anat_scan

    settings = MriSettings.from_config(args.settings_json)
    return preprocess_anat_scan(args.image, args.suffix, _outputs(args, args.suffix), settings)


def cmd_preprocess_bold(args: argparse.Namespace) -> int:
    from mmssl.preprocess.falff import FalffSettings
    from mmssl.preprocess.settings import MriSettings
    from mmssl.preprocess.steps import preprocess_bold_scan

    settings = MriSettings.from_config(args.settings_json)
    falff_settings = FalffSettings.from_config(args.falff_json)
    return preprocess_bold_scan(args.bold, args.tr, args.tr_source, _outputs(args, "bold"), settings, falff_settings)


def cmd_qc(args: argparse.Namespace) -> int:
    from mmssl.preprocess.qc_report import write_qc
    from mmssl.preprocess.settings import MriSettings

    settings = MriSettings.from_config(args.settings_json)
    write_qc(args.samples, args.sources, settings.qc, args.out_tsv, args.out_html, args.montage_dir, args.excluded)
    return 0


def _add_outputs(parser: argparse.ArgumentParser, suffix: str) -> None:
    """--out-<key> for every derivative of a scan of raw ``suffix`` (mmssl.paths.derivative_specs);
    for a BOLD run, ALFF's are optional (given when the dataset's sources include ALFF)."""
    optional = ALFF_DERIVATIVES if suffix == "bold" else {}
    for key in derivative_specs(suffix, alff=True):
        flag = key.lower().replace("_", "-")
        parser.add_argument(f"--out-{flag}", dest=f"out_{key.lower()}", type=Path, required=key not in optional,
                            help=f"derivative '{key}' (BIDS-derivatives name from mmssl.paths)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``preprocess-anat``, ``preprocess-bold`` and ``qc``; each sets ``func``
    returning an exit status."""
    p = sub.add_parser("preprocess-anat", help="one T1w, T2w or FLAIR: header check, brain mask, affine to MNI, 3 mm 64^3")
    add_paths(p, "--image")
    p.add_argument("--suffix", required=True, choices=STRUCTURAL, help="its BIDS suffix (header limits preprocess.header.<suffix>)")
    add_settings(p, "preprocess")
    _add_outputs(p, "T1w")  # the same keys for every structural suffix
    p.set_defaults(func=cmd_preprocess_anat)

    p = sub.add_parser("preprocess-bold", help="one BOLD run: header check, fALFF (and ALFF), mean EPI to MNI, 3 mm 64^3")
    add_paths(p, "--bold")
    p.add_argument("--tr", type=float, help="its RepetitionTime (s), resolved by discovery from the sidecars by BIDS "
                   "inheritance (samples.tsv bold_RepetitionTime; none: the header's, with a warning)")
    p.add_argument("--tr-source", help="the sidecar that gave --tr, for messages")
    add_settings(p, "preprocess")
    add_settings(p, "falff", "--falff-json")
    _add_outputs(p, "bold")
    p.set_defaults(func=cmd_preprocess_bold)

    p = sub.add_parser("qc", help="qc.tsv, one montage PNG per subject, one HTML page")
    add_paths(p, "--samples", "--out-tsv", "--out-html", "--montage-dir")
    p.add_argument("--excluded", type=Path, help="excluded.tsv: listed on the page, and its subjects flagged")
    add_source_list(p)
    add_settings(p, "preprocess")
    p.set_defaults(func=cmd_qc)
