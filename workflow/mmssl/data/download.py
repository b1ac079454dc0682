"""Fetching raw data files from a URL list with checksums (the ``download`` rule).

``resources/downloads.tsv`` lists dataset, file, url (several mirrors may be given for
one file, tried in order) and checksum (``md5:<hex>`` or ``sha256:<hex>``). Offline,
the error says which files to put where by hand.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.request
from pathlib import Path

import pandas as pd

from mmssl.io import atomic_path

log = logging.getLogger("mmssl.download")


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, checksum: str) -> bool:
    """True when ``path`` matches ``checksum`` ('md5:...' or 'sha256:...')."""
    algorithm, _, expected = checksum.partition(":")
    if algorithm not in ("md5", "sha256") or not expected:
        raise ValueError(f"checksum {checksum!r}: expected 'md5:<hex>' or 'sha256:<hex>'")
    return file_digest(path, algorithm) == expected.lower()


def read_url_table(path: str | Path, dataset: str) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t", comment="#")
    missing = {"dataset", "file", "url", "checksum"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: lacks columns {sorted(missing)}")
    rows = table[table["dataset"] == dataset]
    if rows.empty:
        raise ValueError(f"{path}: no files listed for dataset {dataset!r}; listed: {sorted(set(table['dataset']))}")
    return rows


def fetch(url: str, dest: Path, timeout: float = 60) -> None:
    """Download ``url`` to ``dest``; a broken transfer leaves no file at ``dest``."""
    with atomic_path(dest) as tmp, urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as fh:
        while chunk := resp.read(1 << 20):
            fh.write(chunk)


def download(url_table: str | Path, dataset: str, out_dir: str | Path, config_keys: str = "") -> list[Path]:
    """Fetch every file of ``dataset`` into ``out_dir``; files already present with the
    right checksum are kept. Raises with a to-do list when files cannot be fetched, naming
    ``config_keys`` (the config keys that point at ``out_dir``) when given."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done, failed = [], []
    for file, group in read_url_table(url_table, dataset).groupby("file", sort=False):
        dest, checksum = out_dir / file, group["checksum"].iloc[0]
        if dest.is_file() and verify(dest, checksum):
            done.append(dest)
            continue
        for url in group["url"]:
            try:
                log.info("fetching %s", url)
                fetch(url, dest)
            except OSError as err:
                log.warning("%s: %s", url, err)
                continue
            if verify(dest, checksum):
                done.append(dest)
                break
            log.warning("%s: checksum mismatch, discarding", url)
            dest.unlink()
        else:
            failed.append((file, list(group["url"])))
    if failed:
        lines = "\n".join(f"  {out_dir / f}  (from {' or '.join(u)})" for f, u in failed)
        wanted = f" (the folder of {config_keys})" if config_keys else ""
        raise RuntimeError(f"could not download {len(failed)} file(s) for {dataset!r} into {out_dir}{wanted}. "
                           f"Put them there by hand, or point that key at a folder that has them:\n{lines}")
    return done
