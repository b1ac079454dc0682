"""CLI entry points of the data steps: prepare (raw files -> store), splits, download."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mmssl.cli import json_arg, path_arg
from mmssl.data.download import download
from mmssl.data.mnist import embedded_mnist, read_mnist_dir
from mmssl.data.splits import SplitSettings, make_splits, subjects_table
from mmssl.data.store import read_store
from mmssl.data.two_view import build_two_view_store


def prepare_two_view(args: argparse.Namespace) -> None:
    digits = embedded_mnist() if args.source == "embedded" else read_mnist_dir(args.path)
    build_two_view_store(digits, args.out, seed=args.seed)


def write_splits(args: argparse.Namespace) -> None:
    """All folds' split tables at once, so they come from one stratified K-fold."""
    store = read_store(args.store)
    tables = make_splits(subjects_table(store.index), SplitSettings.from_config(args.settings_json))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for k, table in enumerate(tables):
        path = args.out_dir / f"fold{k}.tsv"
        table.to_csv(path.with_suffix(".tsv.tmp"), sep="\t", index=False)
        os.replace(path.with_suffix(".tsv.tmp"), path)


def run_download(args: argparse.Namespace) -> None:
    download(args.urls, args.dataset, args.out_dir)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare-two-view", help="MNIST digits -> Two-View MNIST store")
    p.add_argument("--source", choices=["embedded", "idx"], default="embedded")
    p.add_argument("--path", type=path_arg, help="folder of the MNIST IDX files (source idx)")
    p.add_argument("--seed", type=int, default=343)
    p.add_argument("--out", type=path_arg, required=True)
    p.set_defaults(func=prepare_two_view)

    p = sub.add_parser("splits", help="subject-level fold tables for a store")
    p.add_argument("--store", type=path_arg, required=True)
    p.add_argument("--settings-json", type=json_arg, default={})
    p.add_argument("--out-dir", type=path_arg, required=True)
    p.set_defaults(func=write_splits)

    p = sub.add_parser("download", help="fetch raw data files listed in a URL table, verifying checksums")
    p.add_argument("--urls", type=path_arg, required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out-dir", type=path_arg, required=True)
    p.set_defaults(func=run_download)
