"""Command-line entry points (file in, file out) for the Snakemake rules of the MRI branch.

``add_commands(subparsers)`` registers ``synthetic-bids``, ``discover`` and ``falff``; the
dispatcher calls ``args.func(args)``. Every output is written to a temporary name and moved
into place, so an interrupted job never leaves a complete-looking file.

``--settings-json`` takes inline JSON (``'{"window_days": 365}'``) or a path to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mmssl.preprocess.bids import DEFAULT_SESSION_DAY_PATTERNS, EXCLUDED_COLUMNS, discover, exclusion_row
from mmssl.preprocess.clinical import PairingSettings, build_pairs, read_clinical, require_subjects_per_class
from mmssl.preprocess.errors import BadInputError, NotEnoughSubjectsError
from mmssl.preprocess.falff import FalffSettings, falff_file

BAD_INPUT_EXIT_CODE = 3
STATUS_COLUMNS = ("path", "status", "reason", "tr", "n_volumes", "n_mask_voxels", "median_falff")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the MRI discovery/fALFF sub-commands on an argparse subparsers object."""
    p = sub.add_parser("synthetic-bids", help="write the synthetic OASIS-3-shaped BIDS dataset")
    p.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    p.add_argument("--n-subjects", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-volumes", type=int, default=160, help="BOLD volumes per run, dummies included")
    p.add_argument("--bold-voxel-mm", type=float, default=5.0)
    p.add_argument("--bad-inputs", action="store_true", help="add defective subjects (derivatives/truth/bad_inputs.tsv)")
    p.set_defaults(func=cmd_synthetic_bids)

    p = sub.add_parser("discover", help="find T1w/BOLD runs, match clinical visits, write subjects/pairs/excluded TSVs")
    p.add_argument("--bids-dir", required=True, type=Path)
    p.add_argument("--clinical", required=True, type=Path, help="clinical CSV/TSV (OASIS-3 UDS-like)")
    p.add_argument("--settings-json", default=None, help="pairing settings: inline JSON or a JSON file")
    p.add_argument("--dataset", default="", help="dataset name, for messages")
    p.add_argument("--out-subjects", required=True, type=Path)
    p.add_argument("--out-pairs", required=True, type=Path)
    p.add_argument("--out-excluded", required=True, type=Path)
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("falff", help="fALFF map, EPI brain mask and mean EPI of one BOLD run")
    p.add_argument("--bold", required=True, type=Path)
    p.add_argument("--sidecar", default="", help="JSON sidecar ('' = none: TR from the header)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--out-mask", required=True, type=Path)
    p.add_argument("--out-mean", required=True, type=Path)
    p.add_argument("--settings-json", default=None, help="falff settings: inline JSON or a JSON file")
    p.add_argument("--out-status", type=Path, default=None, help="one-row TSV: path, status (ok|excluded), reason, tr, ...")
    p.add_argument("--excluded", type=Path, default=None,
                   help="TSV (subject, session, path, reason): on bad input write the reason there and exit 0 without "
                        f"image outputs (without it: exit {BAD_INPUT_EXIT_CODE}); header-only on success")
    p.set_defaults(func=cmd_falff)


def load_settings(value: str | None, what: str = "--settings-json") -> dict[str, Any]:
    """Inline JSON object, a path to a JSON file, or None (-> {})."""
    if value is None or not value.strip():
        return {}
    text = value if value.lstrip().startswith("{") else _read_text(Path(value), what)
    try:
        settings = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{what}: not valid JSON ({error}): {value[:200]!r}") from error
    if not isinstance(settings, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(settings).__name__}")
    return settings


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} is neither inline JSON nor an existing file")
    return path.read_text()


def write_tsv_atomic(table: pd.DataFrame, path: Path) -> Path:
    """Write a TSV through a temporary file in the same folder and os.replace it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp{os.getpid()}_{path.name}")
    table.to_csv(tmp, sep="\t", index=False, na_rep="")
    os.replace(tmp, path)
    return path


def cmd_synthetic_bids(args: argparse.Namespace) -> int:
    from mmssl.preprocess.synthetic import make_synthetic_bids  # pulls nilearn; only this command needs it

    make_synthetic_bids(args.out, n_subjects=args.n_subjects, seed=args.seed, n_volumes=args.n_volumes,
                        bold_voxel_mm=args.bold_voxel_mm, bad_inputs=args.bad_inputs)
    return 0


def split_discover_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], PairingSettings]:
    """Separate discovery keys (bold_task, session_day_patterns) from the pairing settings."""
    values = dict(settings)
    discovery = {
        "site_key": values.pop("site_key", None),
        "bold_task": values.pop("bold_task", "rest"),
        "session_day_patterns": tuple((str(p), float(u)) for p, u in values.pop("session_day_patterns", DEFAULT_SESSION_DAY_PATTERNS)),
    }
    return discovery, PairingSettings.from_mapping(values)


def cmd_discover(args: argparse.Namespace) -> int:
    discovery_settings, settings = split_discover_settings(load_settings(args.settings_json))
    site_key = discovery_settings.pop("site_key")
    found = discover(args.bids_dir, **discovery_settings)
    clinical = read_clinical(args.clinical, settings.columns)
    result = build_pairs(found.scans, clinical, settings)
    excluded = pd.concat([found.excluded, result.excluded], ignore_index=True)
    write_tsv_atomic(excluded, args.out_excluded)
    if settings.min_subjects_per_class is not None:
        try:
            require_subjects_per_class(result.subjects, settings.classes, settings.min_subjects_per_class, args.dataset)
        except NotEnoughSubjectsError as error:
            raise SystemExit(f"{error}\nexclusion reasons: {_reason_summary(excluded)}") from error
    if site_key:
        add_sites(result, site_key)
    write_tsv_atomic(result.subjects, args.out_subjects)
    write_tsv_atomic(result.pairs, args.out_pairs)
    print(f"{len(result.subjects)} subjects, {len(result.pairs)} pairs, {len(excluded)} exclusions "
          f"({args.out_excluded})", file=sys.stderr)
    return 0


def sidecar_value(sidecar: str, key: str) -> str:
    """``key`` of a JSON sidecar ('' when the file or the key is missing or unreadable)."""
    if not sidecar or not Path(sidecar).is_file():
        return ""
    try:
        return str(json.loads(Path(sidecar).read_text() or "{}").get(key, ""))
    except (ValueError, OSError):
        return ""


def add_sites(result: Any, site_key: str) -> None:
    """A ``site`` column from the BOLD sidecars' ``site_key`` (e.g. StationName,
    InstitutionName): pairs get their run's value, subjects their first pair's, so
    ``splits.group_by: site`` can keep every site on one side of each fold."""
    pairs = result.pairs
    pairs["site"] = [sidecar_value(str(s), site_key) or "unknown" for s in pairs["bold_sidecar"].fillna("")]
    first = pairs.drop_duplicates("subject").set_index("subject")["site"]
    result.subjects["site"] = result.subjects["subject"].map(first).fillna("unknown")


def _reason_summary(excluded: pd.DataFrame, top: int = 5) -> str:
    counts = excluded["reason"].value_counts().head(top)
    return "; ".join(f"{n} x {reason}" for reason, n in counts.items()) or "none"


def cmd_falff(args: argparse.Namespace) -> int:
    settings = FalffSettings.from_mapping(load_settings(args.settings_json))
    outputs = (args.out, args.out_mask, args.out_mean)
    try:
        result = falff_file(args.bold, args.sidecar or None, *outputs, settings=settings)
    except BadInputError as error:
        if args.out_status is not None:
            _write_status(args.out_status, {"path": error.path, "status": "excluded", "reason": error.reason})
        if args.excluded is None:
            print(f"error: bad input: {error}", file=sys.stderr)
            raise SystemExit(BAD_INPUT_EXIT_CODE) from error  # SystemExit: the dispatcher ignores return values
        write_tsv_atomic(pd.DataFrame([exclusion_row(error.path, error.reason)], columns=list(EXCLUDED_COLUMNS)), args.excluded)
        print(f"excluded: {error}", file=sys.stderr)
        return 0
    if args.excluded is not None:
        write_tsv_atomic(pd.DataFrame(columns=list(EXCLUDED_COLUMNS)), args.excluded)
    if args.out_status is not None:
        _write_status(args.out_status, {"path": str(args.bold), "status": "ok", "reason": "", "tr": result.tr,
                                        "n_volumes": result.n_volumes, "n_mask_voxels": result.n_mask_voxels,
                                        "median_falff": result.median_falff})
    return 0


def _write_status(path: Path, row: dict[str, Any]) -> None:
    write_tsv_atomic(pd.DataFrame([row], columns=list(STATUS_COLUMNS)), path)
