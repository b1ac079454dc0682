"""CLI entry points of the data steps: prepare (raw files -> store), splits, download."""

from __future__ import annotations

import argparse
import os

import pandas as pd

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
    """One fold's split table. Every fold is cut from the same seeded stratified K-fold,
    so jobs that write different folds agree with each other."""
    if (args.store is None) == (args.subjects is None):
        raise ValueError("give exactly one of --store and --subjects")
    if args.store is not None:
        index = read_store(args.store).index
    else:
        index = pd.read_csv(args.subjects, sep="\t", dtype={"subject": str})
    settings = SplitSettings.from_config(args.settings_json)
    if not 0 <= args.fold < settings.n_folds:
        raise ValueError(f"fold {args.fold} out of range for n_folds = {settings.n_folds}")
    table = make_splits(subjects_table(index, settings.group_by), settings)[args.fold]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    table.to_csv(tmp, sep="\t", index=False)
    os.replace(tmp, args.out)


def run_download(args: argparse.Namespace) -> None:
    download(args.urls, args.dataset, args.out_dir, args.config_keys)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare-two-view", help="MNIST digits -> Two-View MNIST store")
    p.add_argument("--source", choices=["embedded", "idx"], default="embedded")
    p.add_argument("--path", type=path_arg, help="folder of the MNIST IDX files (source idx)")
    p.add_argument("--seed", type=int, default=343)
    p.add_argument("--out", type=path_arg, required=True)
    p.set_defaults(func=prepare_two_view)

    p = sub.add_parser("splits", help="subject-level fold tables for a store")
    p.add_argument("--store", type=path_arg, help="a packed store (one row per sample)")
    p.add_argument("--subjects", type=path_arg, help="or a TSV with subject and label columns (pairs, subjects)")
    p.add_argument("--settings-json", type=json_arg, default={})
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--out", type=path_arg, required=True)
    p.set_defaults(func=write_splits)

    p = sub.add_parser("download", help="fetch raw data files listed in a URL table, verifying checksums")
    p.add_argument("--urls", type=path_arg, required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out-dir", type=path_arg, required=True)
    p.add_argument("--config-keys", default="", help="the config keys naming --out-dir, for the error message")
    p.set_defaults(func=run_download)
