"""The report stage's sub-command: ``mmssl report`` (one dataset's summary, table, figure;
the work is :mod:`mmssl.report.steps`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _report_cmd(args: argparse.Namespace) -> None:
    from mmssl.report.steps import write_report_files

    write_report_files(args.dataset, args.inputs, args.methods, args.summary, args.table, args.figure, args.n_folds,
                       args.test_train_ratio, args.table_html, args.provenance)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the ``report`` sub-command (``args.func(args)`` runs it)."""
    p = sub.add_parser("report", help="summary.tsv, table.md and figure.png of one dataset")
    p.add_argument("--dataset", required=True)
    p.add_argument("--methods", nargs="+", required=True, help="methods in the order of the table; random, when given, is its first row "
                   "(the floor, never bold); random and S are the baselines of the paired differences")
    p.add_argument("--inputs", nargs="+", type=Path, required=True,
                   help="probe and similarity TSVs: .../{probe|similarity}/{method}/fold{k}.tsv")
    p.add_argument("--summary", type=Path, required=True, help="output summary.tsv (long format)")
    p.add_argument("--table", type=Path, required=True, help="output table.md")
    p.add_argument("--figure", type=Path, required=True, help="output figure.png")
    p.add_argument("--table-html", type=Path, help="output table.html: table.md as an HTML page (shown inline in the report)")
    p.add_argument("--provenance", type=Path, help="output provenance.json: the versions of mmssl and its libraries")
    p.add_argument("--n-folds", type=int, default=None,
                   help="K, the folds of the cross-validation (splits.n_folds), for the corrected resampled t of the "
                   "paired differences: n_test/n_train = 1/(K - 1) (default: the highest fold index in --inputs + 1)")
    p.add_argument("--test-train-ratio", type=float, default=None,
                   help="n_test/n_train of one fold for that correction, when known (e.g. a fixed test pool: "
                   "1000/3200 = 0.3125); overrides --n-folds")
    p.set_defaults(func=_report_cmd)
