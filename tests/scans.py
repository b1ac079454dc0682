"""Running the rules' per-scan commands (preprocess-anat / preprocess-bold) in tests, with
every output named by mmssl.paths exactly as the rules name them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mmssl.cli import main
from mmssl.paths import derivatives_of, scan_prefix


def _flags(out: dict[str, str]) -> list[str]:
    return [arg for key, path in out.items() for arg in (f"--out-{key.lower().replace('_', '-')}", path)]


def run_preprocess_anat(image: Path, root: Path, settings: dict | None = None) -> tuple[int, pd.DataFrame | None, dict[str, Path]]:
    """A structural image (T1w, T2w or FLAIR, told by its BIDS name): (exit status, the
    status table or None when the job wrote none, outputs)."""
    out = derivatives_of(root, image)
    suffix, _ = scan_prefix(image)
    rc = main(["preprocess-anat", "--image", str(image), "--suffix", suffix, "--settings-json", json.dumps(settings or {}),
               *_flags(out)])
    return rc, _status(out), {k: Path(v) for k, v in out.items()}


def run_preprocess_t1(t1: Path, root: Path, settings: dict | None = None) -> tuple[int, pd.DataFrame | None, dict[str, Path]]:
    """A T1w (see :func:`run_preprocess_anat`)."""
    return run_preprocess_anat(t1, root, settings)


def run_preprocess_bold(bold: Path, sidecar: Path | None, root: Path, settings: dict | None = None,
                        falff: dict | None = None, alff: bool = False) -> tuple[int, pd.DataFrame | None, dict[str, Path]]:
    """(exit status, the status table or None when the job wrote none, outputs); the ALFF
    maps too with ``alff``."""
    out = derivatives_of(root, bold, alff=alff)
    argv = ["preprocess-bold", "--bold", str(bold), "--settings-json", json.dumps(settings or {}),
            "--falff-json", json.dumps(falff or {}), *_flags(out)]
    if sidecar is not None:  # what discovery resolves from the sidecar, as the rule passes it
        tr = json.loads(Path(sidecar).read_text()).get("RepetitionTime")
        if tr is not None:
            argv += ["--tr", str(tr), "--tr-source", str(sidecar)]
    rc = main(argv)
    return rc, _status(out), {k: Path(v) for k, v in out.items()}


def _status(out: dict[str, str]) -> pd.DataFrame | None:
    path = Path(out["status"])
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False) if path.exists() else None
