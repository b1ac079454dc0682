"""The BIDS input stage's sub-commands (workflow/rules/preprocess.smk): ``discover`` (find
the sources' runs, match clinical visits) and ``collect`` (the samples of preprocessed
volumes, and every exclusion); their work is :mod:`mmssl.bids.steps`."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmssl.arguments import add_log_excluded, add_paths, add_settings, add_source_list


def cmd_discover(args: argparse.Namespace) -> int:
    from mmssl.bids.steps import write_discovery

    settings = dict(args.settings_json)
    for key in ("participant_label", "exclude_participant_label"):  # the BIDS-App flags override the config keys
        if getattr(args, key) is not None:
            settings[key] = [label.removeprefix("sub-") for label in getattr(args, key)]
    write_discovery(args.bids_dir, args.clinical, settings, args.sources, args.dataset, args.out_subjects,
                    args.out_samples, args.out_excluded, args.log_excluded, args.out_description)
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from mmssl.bids.steps import write_collected

    write_collected(args.discovery_excluded, args.samples, args.statuses, args.preproc_dir, args.sources,
                    args.out_excluded, args.out_samples, args.log_excluded)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``discover`` and ``collect``; each sets ``func`` returning an exit status."""
    p = sub.add_parser("discover", help="find the sources' runs, match clinical visits, write subjects/samples/excluded TSVs")
    add_paths(p, "--bids-dir", "--out-subjects", "--out-samples", "--out-excluded")
    p.add_argument("--clinical", type=Path, help="a clinical visit table (OASIS-3 UDS-like); without it labels come "
                   "from discover.participants (participants.tsv)")
    p.add_argument("--participant-label", nargs="+", metavar="LABEL",
                   help="BIDS-App: only these subjects (overrides discover.participant_label)")
    p.add_argument("--exclude-participant-label", nargs="+", metavar="LABEL",
                   help="BIDS-App: leave these subjects out (overrides discover.exclude_participant_label)")
    p.add_argument("--out-description", type=Path,
                   help="the derivatives' dataset_description.json (GeneratedBy, SourceDatasets)")
    add_log_excluded(p)
    add_settings(p, "discover")
    add_source_list(p)
    p.add_argument("--dataset", required=True, help="dataset name, for messages")
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("collect", help="excluded.tsv and the samples of preprocessed volumes")
    add_paths(p, "--discovery-excluded", "--samples", "--out-excluded", "--out-samples")
    p.add_argument("--statuses", nargs="*", default=[], type=Path, help="every scan's status TSV")
    p.add_argument("--preproc-dir", required=True, type=Path, help="results/{dataset}/preproc (derivative names: mmssl.paths)")
    add_source_list(p)
    add_log_excluded(p)
    p.set_defaults(func=cmd_collect)
