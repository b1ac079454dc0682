"""Running the rules' per-scan commands (preprocess-t1 / preprocess-bold) in tests, with
every output named by mmssl.paths exactly as the rules name them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mmssl.cli import main
from mmssl.paths import derivatives_of


def _flags(out: dict[str, str]) -> list[str]:
    return [arg for key, path in out.items() for arg in (f"--out-{key.lower().replace('_', '-')}", path)]


def run_preprocess_t1(t1: Path, root: Path, settings: dict | None = None) -> tuple[int, pd.DataFrame | None, dict[str, Path]]:
    """(exit status, the status table or None when the job wrote none, outputs)."""
    out = derivatives_of(root, t1)
    rc = main(["preprocess-t1", "--t1", str(t1), "--settings-json", json.dumps(settings or {}), *_flags(out)])
    return rc, _status(out), {k: Path(v) for k, v in out.items()}


def run_preprocess_bold(bold: Path, sidecar: Path | None, root: Path, settings: dict | None = None,
                        falff: dict | None = None) -> tuple[int, pd.DataFrame | None, dict[str, Path]]:
    """(exit status, the status table or None when the job wrote none, outputs)."""
    out = derivatives_of(root, bold)
    argv = ["preprocess-bold", "--bold", str(bold), "--settings-json", json.dumps(settings or {}),
            "--falff-json", json.dumps(falff or {}), *_flags(out)]
    if sidecar is not None:
        argv += ["--sidecar", str(sidecar)]
    rc = main(argv)
    return rc, _status(out), {k: Path(v) for k, v in out.items()}


def _status(out: dict[str, str]) -> pd.DataFrame | None:
    path = Path(out["status"])
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False) if path.exists() else None
