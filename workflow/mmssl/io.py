"""Atomic writes: the one way every ``mmssl`` step puts a file or folder in place.

Each output is written under a temporary sibling name (``.tmp<pid>_<name>``, keeping the
full suffix so that nibabel still sees ``.nii.gz`` and numpy ``.npz``) and renamed with
``os.replace`` once complete. An interrupted job therefore never leaves a file that looks
finished, and two jobs writing the same name do not interleave. The writers below all go
through :func:`atomic_path` or :func:`atomic_dir`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


def temporary_sibling(path: str | Path) -> Path:
    """``dir/.tmp<pid>_<name>``: same folder (so ``os.replace`` is atomic), same suffixes."""
    path = Path(path)
    return path.with_name(f".tmp{os.getpid()}_{path.name}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; on success it is renamed to
    ``path`` (parents created), on error it is removed and ``path`` is left untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Like :func:`atomic_path` for a folder: yield an empty temporary folder; on success it
    replaces ``path`` (an existing folder there is removed first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(text: str, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(data: Any, path: str | Path) -> Path:
    """JSON, indented and with sorted keys (stable diffs between runs)."""
    return write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", path)


def write_tsv(table: pd.DataFrame, path: str | Path, na_rep: str = "") -> Path:
    """A TSV without the index; missing values are ``na_rep`` (empty cells by default)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep=na_rep)
    return Path(path)
