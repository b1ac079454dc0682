"""T1w / fALFF -> 3 mm MNI, landmarks, packing and QC: the functions and the ``mmssl``
sub-commands the Snakemake rules call (file in, file out; every output written under a
temporary name and renamed, so an interrupted job leaves no finished-looking file).

Per-subject outputs follow BIDS-derivatives naming, e.g. under
``results/{dataset}/preproc/sub-OAS30001/ses-d0129/``::

    anat/sub-OAS30001_ses-d0129_run-01_space-MNI152NLin2009aSym_res-3mm_desc-brain_T1w.nii.gz
    anat/sub-OAS30001_ses-d0129_run-01_space-MNI152NLin2009aSym_res-3mm_desc-brain_mask.nii.gz
    anat/sub-OAS30001_ses-d0129_run-01_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.txt
    anat/sub-OAS30001_ses-d0129_run-01_space-MNI152NLin2009aSym_desc-qc_T1w.json
    func/sub-OAS30001_ses-d0129_task-rest_run-01_space-MNI152NLin2009aSym_res-3mm_desc-falff_boldmap.nii.gz
    func/sub-OAS30001_ses-d0129_task-rest_run-01_from-boldref_to-MNI152NLin2009aSym_mode-image_xfm.txt

(``MNI152NLin2009aSym``: nilearn's bundled template, see :mod:`mmssl.preprocess.spatial`.)
Transform files hold the template->native RAS matrix (see
:mod:`mmssl.preprocess.registration`).

Settings come from ``--settings-json`` (a JSON string or a .json file) holding the
``preprocess`` config section; see :class:`MriSettings`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from mmssl.settings import check_keys
from mmssl.preprocess.bids import EXCLUDED_COLUMNS, exclusion_row, parse_bids_name
from mmssl.preprocess.errors import BadInputError
from mmssl.preprocess.masking import (
    BACKENDS,
    MaskSettings,
    brain_mask_fsl,
    brain_mask_python,
    register_to_template,
    template_metric_mask,
)
from mmssl.preprocess.qc import QcThresholds, qc_table, subject_montages, write_html, write_montage
from mmssl.preprocess.registration import AffineResult, RegistrationSettings, register_affine_flirt, save_transform
from mmssl.preprocess.spatial import (
    GridSettings,
    grid_brain_mask,
    mni_grid,
    mni_template,
    to_grid,
    to_grid_masked,
    zero_outside,
)


# Mean EPIs are 3-5 mm and point-sampled; keeping some smoothing at the finest level and
# a coarser joint histogram halves their error on the synthetic data (mean displacement
# 1.9 -> 0.8 mm over 4 subjects x 3 seeds, 5 mm EPI). T1w keeps the sharp defaults (0.15 mm).
EPI_REGISTRATION = RegistrationSettings(bins=16, smoothing_sigmas=(2.0, 1.0, 1.0))


# ---------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MriSettings:
    """The keys of config section ``preprocess`` (any other key is an error; fALFF's
    settings are their own section, ``falff``):

    backend: ``python`` (default) or ``fsl``. registration / grid / brain_mask / qc: see
    :class:`RegistrationSettings`, :class:`GridSettings`, :class:`MaskSettings`,
    :class:`QcThresholds`. registration_epi: the registration of the mean EPI, given as
    changes to :data:`EPI_REGISTRATION`. store_dtype: dtype of the packed store (``float16``).
    motion_correction: run FSL ``mcflirt`` on each BOLD run before fALFF (FSL backend
    only; see :mod:`mmssl.preprocess.motion`). Off by default, as in the paper, which
    names no motion correction.
    """

    backend: str = "python"
    registration: RegistrationSettings = field(default_factory=RegistrationSettings)
    registration_epi: RegistrationSettings = field(default_factory=lambda: EPI_REGISTRATION)
    grid: GridSettings = field(default_factory=GridSettings)
    brain_mask: MaskSettings = field(default_factory=MaskSettings)
    qc: QcThresholds = field(default_factory=QcThresholds)
    store_dtype: str = "float16"
    motion_correction: bool = False

    @classmethod
    def from_config(cls, cfg: dict | None) -> MriSettings:
        cfg = check_keys(cls, cfg, "preprocess")
        backend = cfg.get("backend", "python")
        if backend not in BACKENDS:
            raise ValueError(f"preprocess.backend must be one of {BACKENDS}, got {backend!r}")
        dtype = cfg.get("store_dtype", "float16")
        if dtype not in ("float16", "float32"):
            raise ValueError(f"preprocess.store_dtype must be float16 or float32, got {dtype!r}")
        return cls(
            backend=backend,
            registration=RegistrationSettings.from_config(cfg.get("registration")),
            registration_epi=RegistrationSettings.from_config(cfg.get("registration_epi"), base=EPI_REGISTRATION),
            grid=GridSettings.from_config(cfg.get("grid")),
            brain_mask=MaskSettings.from_config(cfg.get("brain_mask")),
            qc=QcThresholds.from_config(cfg.get("qc")),
            store_dtype=dtype,
            motion_correction=_motion_correction(cfg.get("motion_correction", False), backend),
        )


def _motion_correction(value: Any, backend: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"preprocess.motion_correction must be true or false, got {value!r}")
    if value and backend != "fsl":
        raise ValueError("preprocess.motion_correction: true runs FSL mcflirt and needs preprocess.backend: fsl "
                         f"(got backend {backend!r}); the python backend has no motion correction")
    return value


def load_settings(text_or_path: str | None) -> MriSettings:
    """Settings from a JSON string, a path to a JSON file, or defaults for None/empty."""
    if not text_or_path:
        return MriSettings()
    if os.path.isfile(text_or_path):
        text = Path(text_or_path).read_text()
        source = text_or_path
    else:
        text, source = text_or_path, "--settings-json"
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}: not valid JSON ({error})") from error
    return MriSettings.from_config(cfg)


# ---------------------------------------------------------------------------------------
# Reading and writing
# ---------------------------------------------------------------------------------------


def load_volume(path: str | Path) -> nib.Nifti1Image:
    """A 3D image (a trailing axis of length 1 is dropped) as float32; anything unusable
    (missing, unreadable, not 3D, non-finite, constant) raises BadInputError naming it."""
    if not Path(path).is_file():
        raise BadInputError(path, "file not found")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises ImageFileError, OSError, EOFError, zlib.error, ValueError...
        raise BadInputError(path, f"unreadable NIfTI: {type(error).__name__}: {error}") from error
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise BadInputError(path, f"expected a 3D image, got shape {data.shape}")
    bad = int((~np.isfinite(data)).sum())
    if bad:
        raise BadInputError(path, f"{bad} NaN or inf values")
    if data.max() == data.min():
        raise BadInputError(path, f"image is constant ({data.max():g})")
    if abs(np.linalg.det(img.affine[:3, :3])) < 1e-6:
        raise BadInputError(path, "singular affine (zero voxel size?)")
    return nib.Nifti1Image(data, img.affine)


def _tmp(path: Path) -> Path:
    """Temporary sibling keeping the full suffix (nibabel picks gzip from ``.nii.gz``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".tmp{os.getpid()}_{path.name}")


def save_nifti(img: nib.Nifti1Image, path: str | Path, dtype: type = np.float32) -> Path:
    path = Path(path)
    out = nib.Nifti1Image(np.asarray(img.dataobj).astype(dtype), img.affine)
    out.header.set_xyzt_units("mm")
    tmp = _tmp(path)
    nib.save(out, str(tmp))
    os.replace(tmp, path)
    return path


def save_json(data: dict, path: str | Path) -> Path:
    path = Path(path)
    tmp = _tmp(path)
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path


def save_xfm(matrix: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    tmp = _tmp(path)
    save_transform(matrix, tmp)
    os.replace(tmp, path)
    return path


def save_tsv(table: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    tmp = _tmp(path)
    table.to_csv(tmp, sep="\t", index=False)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------
# Derivative names
# ---------------------------------------------------------------------------------------

SPACE_RES = "space-MNI152NLin2009aSym_res-3mm"


def derivative_paths(preproc_dir: str | Path, source: str | Path) -> dict[str, Path]:
    """BIDS-derivatives outputs for one native input, named from its BIDS file name.

    T1w ``sub-X_ses-Y_run-01_T1w.nii.gz`` -> keys ``T1w``, ``mask``, ``xfm``, ``qc`` under
    ``preproc_dir/sub-X/ses-Y/anat/``; BOLD ``sub-X_ses-Y_task-rest_run-01_bold.nii.gz`` ->
    keys ``fALFF``, ``mask``, ``xfm``, ``qc`` under ``.../func/`` (see the module docstring).
    Rules and :func:`preproc_pairs` both use this, so their names cannot drift apart.
    """
    name = parse_bids_name(Path(source).name)
    if name is None or name.suffix not in ("T1w", "bold"):
        raise ValueError(f"{source}: not a BIDS T1w or bold file name")
    folder = Path(preproc_dir) / f"sub-{name.subject}"
    if name.get("ses"):
        folder /= f"ses-{name.get('ses')}"
    stem = "_".join([f"sub-{name.subject}"] + [f"{k}-{v}" for k, v in name.entities])
    if name.suffix == "T1w":
        folder /= "anat"
        return {
            "T1w": folder / f"{stem}_{SPACE_RES}_desc-brain_T1w.nii.gz",
            "mask": folder / f"{stem}_{SPACE_RES}_desc-brain_mask.nii.gz",
            "xfm": folder / f"{stem}_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.txt",
            "qc": folder / f"{stem}_space-MNI152NLin2009aSym_desc-qc_T1w.json",
        }
    folder /= "func"
    return {
        "fALFF": folder / f"{stem}_{SPACE_RES}_desc-falff_boldmap.nii.gz",
        "mask": folder / f"{stem}_{SPACE_RES}_desc-falff_mask.nii.gz",
        "xfm": folder / f"{stem}_from-boldref_to-MNI152NLin2009aSym_mode-image_xfm.txt",
        "qc": folder / f"{stem}_space-MNI152NLin2009aSym_desc-qc_bold.json",
    }


def preproc_pairs(pairs: pd.DataFrame, preproc_dir: str | Path, excluded: pd.DataFrame | None = None) -> pd.DataFrame:
    """The pairs table of landmarks / pack / qc from discovery's pairs (pair_id, subject,
    t1_path, bold_path, label, ...): sample, subject, T1w, mask, fALFF, mask_fALFF, T1w_qc,
    fALFF_qc, plus discovery's non-path columns. A pair whose T1w or BOLD input is listed
    in ``excluded`` (column ``path``) is dropped; any other pair whose outputs are missing
    is an error (a rule did not run), naming the file."""
    for col in ("pair_id", "subject", "t1_path", "bold_path"):
        if col not in pairs.columns:
            raise ValueError(f"discovery pairs table lacks column {col!r}; has {list(pairs.columns)}")
    dropped = set(excluded["path"].astype(str)) if excluded is not None and len(excluded) else set()
    rows = []
    for pair in pairs.to_dict("records"):
        if str(pair["t1_path"]) in dropped or str(pair["bold_path"]) in dropped:
            continue
        t1, bold = derivative_paths(preproc_dir, pair["t1_path"]), derivative_paths(preproc_dir, pair["bold_path"])
        row = {"sample": pair["pair_id"], "subject": str(pair["subject"]), "T1w": t1["T1w"], "mask": t1["mask"],
               "fALFF": bold["fALFF"], "mask_fALFF": bold["mask"], "T1w_qc": t1["qc"], "fALFF_qc": bold["qc"]}
        missing = [str(p) for p in row.values() if isinstance(p, Path) and not p.is_file()]
        if missing:
            raise FileNotFoundError(f"pair {pair['pair_id']}: missing preprocessed file(s) {missing} and its inputs are not in excluded.tsv")
        rows.append(row | {k: v for k, v in pair.items() if k not in ("pair_id", "subject") and not k.endswith(("_path", "_sidecar"))})
    table = pd.DataFrame(rows)
    return table.astype({c: str for c in ("T1w", "mask", "fALFF", "mask_fALFF", "T1w_qc", "fALFF_qc")}) if len(table) else table


# ---------------------------------------------------------------------------------------
# Pipelines (in memory)
# ---------------------------------------------------------------------------------------


@dataclass
class T1Result:
    """t1: brain-masked T1w on the 64³ grid; mask: its uint8 brain mask; registration:
    template->native affine; mask_volume_ml: the native brain mask's volume."""

    t1: nib.Nifti1Image
    mask: nib.Nifti1Image
    registration: AffineResult
    mask_volume_ml: float


def t1_to_mni(t1: nib.Nifti1Image, settings: MriSettings = MriSettings()) -> T1Result:
    """Skull-strip and affinely register a native T1w, resample it onto the 3 mm grid.

    python: register the head (masking via the template); the grid mask is the template
    brain, dilated. fsl: BET brain registered by FLIRT; the grid mask is BET's mask moved
    (not dilated: BET's edge is the subject's own)."""
    grid = mni_grid(settings.grid)
    if settings.backend == "python":
        native = brain_mask_python(t1, settings.registration, settings.brain_mask)
        registration = native.registration
        assert registration is not None
        mask = grid_brain_mask(settings.grid, settings.brain_mask.dilate_voxels, settings.brain_mask.template_threshold)
        t1_grid = zero_outside(to_grid(t1, registration.fixed_to_moving, grid), mask)
    else:
        native = brain_mask_fsl(t1, settings.brain_mask)
        assert native.brain is not None
        res = settings.brain_mask.registration_resolution
        registration = register_affine_flirt(native.brain, mni_template(res), template_metric_mask(settings.brain_mask))
        # normalised interpolation: BET's zeros must not darken the brain's edge
        t1_grid, mask = to_grid_masked(native.brain, native.mask, registration.fixed_to_moving, grid)
    mask_img = nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), grid.affine)
    return T1Result(t1_grid, mask_img, registration, native.volume_ml)


@dataclass
class FalffMniResult:
    """falff: fALFF on the 64³ grid, 0 outside ``mask`` (template brain ∩ moved EPI mask);
    registration: template->native-EPI affine; falff_mean_in_brain: mean over ``mask``."""

    falff: nib.Nifti1Image
    mask: nib.Nifti1Image
    registration: AffineResult
    falff_mean_in_brain: float


def falff_to_mni(
    falff: nib.Nifti1Image, mean_epi: nib.Nifti1Image, epi_mask: nib.Nifti1Image | None = None, settings: MriSettings = MriSettings()
) -> FalffMniResult:
    """Register the (brain-masked) mean EPI to the template and move the fALFF map along."""
    if falff.shape[:3] != mean_epi.shape[:3] or not np.allclose(falff.affine, mean_epi.affine, atol=1e-3):
        raise ValueError(f"fALFF map {falff.shape} and mean EPI {mean_epi.shape} are not on the same grid")
    moving = mean_epi
    if epi_mask is not None:
        moving = zero_outside(mean_epi, np.asarray(epi_mask.dataobj) > 0)
    if settings.backend == "python":
        registration = register_to_template(moving, settings.registration_epi, settings.brain_mask)
    else:
        res = settings.brain_mask.registration_resolution
        registration = register_affine_flirt(moving, mni_template(res), template_metric_mask(settings.brain_mask))
    grid = mni_grid(settings.grid)
    mask = grid_brain_mask(settings.grid, settings.brain_mask.dilate_voxels, settings.brain_mask.template_threshold).copy()
    if epi_mask is not None:
        falff_grid, valid = to_grid_masked(falff, epi_mask, registration.fixed_to_moving, grid)
        mask &= valid
    else:
        falff_grid = to_grid(falff, registration.fixed_to_moving, grid)
    falff_grid = zero_outside(falff_grid, mask)
    values = np.asarray(falff_grid.dataobj)[mask]
    mean = float(values.mean()) if values.size else float("nan")
    return FalffMniResult(falff_grid, nib.Nifti1Image(mask.astype(np.uint8), grid.affine), registration, mean)


# ---------------------------------------------------------------------------------------
# Command implementations (files in, files out)
# ---------------------------------------------------------------------------------------


def _write_excluded(path: str | Path, rows: list[dict]) -> None:
    save_tsv(pd.DataFrame(rows, columns=list(EXCLUDED_COLUMNS)), path)


def _guarded(run, args: argparse.Namespace) -> int:
    """Run a per-subject command. BadInputError: with ``--excluded``, write the reason there
    (one row) and succeed without image outputs; without it, fail with exit status 3. The
    ``--excluded`` file is written header-only on success, so a rule can always declare it."""
    try:
        run(args)
    except BadInputError as error:
        if args.excluded:
            _write_excluded(args.excluded, [exclusion_row(error.path, error.reason)])
            print(f"excluded: {error}", file=sys.stderr)
            return 0
        print(f"error: bad input: {error}", file=sys.stderr)
        return 3
    if args.excluded:
        _write_excluded(args.excluded, [])
    return 0


def _t1_to_mni(args: argparse.Namespace) -> None:
    settings = load_settings(args.settings_json)
    if args.backend:
        settings = MriSettings.from_config({**_as_config(settings), "backend": args.backend})
    result = t1_to_mni(load_volume(args.t1), settings)
    save_nifti(result.t1, args.out_t1)
    save_nifti(result.mask, args.out_mask, np.uint8)
    save_xfm(result.registration.fixed_to_moving, args.out_xfm)
    if args.out_qc:
        save_json(
            {
                "backend": settings.backend,
                "mask_volume_ml": result.mask_volume_ml,
                "similarity_t1": result.registration.similarity,
                "registration_metric_t1": result.registration.metric,
            },
            args.out_qc,
        )


def _falff_to_mni(args: argparse.Namespace) -> None:
    settings = load_settings(args.settings_json)
    if args.backend:
        settings = MriSettings.from_config({**_as_config(settings), "backend": args.backend})
    epi_mask = _load_mask(args.epi_mask) if args.epi_mask else None
    result = falff_to_mni(_load_map(args.falff), load_volume(args.mean_epi), epi_mask, settings)
    save_nifti(result.falff, args.out)
    save_xfm(result.registration.fixed_to_moving, args.out_xfm)
    if args.out_mask:
        save_nifti(result.mask, args.out_mask, np.uint8)
    if args.out_qc:
        save_json(
            {
                "similarity_epi": result.registration.similarity,
                "registration_metric_epi": result.registration.metric,
                "falff_mean_in_brain": result.falff_mean_in_brain,
            },
            args.out_qc,
        )


def _load_map(path: str) -> nib.Nifti1Image:
    """A fALFF map may legitimately be 0 almost everywhere; only readability and finiteness matter."""
    try:
        return load_volume(path)
    except BadInputError as error:
        if "constant" in error.reason:
            raise BadInputError(path, "fALFF map is constant (empty EPI mask?)") from error
        raise


def _load_mask(path: str) -> nib.Nifti1Image:
    img = load_volume(path)
    return nib.Nifti1Image((np.asarray(img.dataobj) > 0).astype(np.uint8), img.affine)


def _as_config(settings: MriSettings) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(settings)


def read_pairs(path: str | Path) -> pd.DataFrame:
    """Pairs table (TSV): sample, subject, T1w, fALFF, mask[, mask_fALFF, T1w_qc, fALFF_qc, ...]."""
    header = pd.read_csv(path, sep="\t", nrows=0).columns
    # ids such as run "01" or session "0129" must not turn into numbers
    text = {c: str for c in header if c in ("sample", "subject", "label") or c.endswith(("_run", "_session"))}
    table = pd.read_csv(path, sep="\t", dtype=text)
    missing = {"sample", "subject"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: pairs table lacks columns {sorted(missing)}")
    return table


def _preproc_pairs(args: argparse.Namespace) -> None:
    pairs = pd.read_csv(args.pairs, sep="\t", dtype={"subject": str, "t1_run": str, "bold_run": str})
    excluded = pd.read_csv(args.excluded, sep="\t", dtype=str) if args.excluded else None
    table = preproc_pairs(pairs, args.preproc_dir, excluded)
    if table.empty:
        raise ValueError(f"no pairs left from {args.pairs} after exclusions")
    save_tsv(table, args.out)


def _landmarks(args: argparse.Namespace) -> None:
    from mmssl.data.splits import read_split
    from mmssl.preprocess.pack import mask_column
    from mmssl.preprocess.standardize import landmarks_from_pairs, save_landmarks

    pairs = read_pairs(args.pairs)
    landmarks = landmarks_from_pairs(pairs, read_split(args.splits), args.modality, mask_column(pairs, args.modality))
    save_landmarks(landmarks, args.out)


def _pack(args: argparse.Namespace) -> None:
    from mmssl.data.splits import read_split
    from mmssl.preprocess.pack import pack_store
    from mmssl.preprocess.standardize import load_landmarks

    settings = load_settings(args.settings_json)
    landmarks = {"T1w": load_landmarks(args.landmarks_t1), "fALFF": load_landmarks(args.landmarks_falff)}
    pack_store(read_pairs(args.pairs), read_split(args.splits), landmarks, args.out_dir, dtype=settings.store_dtype, size=settings.grid.size)


def _qc(args: argparse.Namespace) -> None:
    """qc.tsv has a row per pair; each subject gets one montage, of its most-flagged pair."""
    settings = load_settings(args.settings_json)
    pairs = read_pairs(args.pairs)
    rows = []
    for pair in pairs.to_dict("records"):
        metrics: dict[str, Any] = {"subject": pair["subject"], "sample": pair["sample"]}
        for col in ("T1w_qc", "fALFF_qc"):
            if isinstance(pair.get(col), str) and pair[col]:
                metrics |= json.loads(Path(pair[col]).read_text())
        rows.append(metrics)
    table = qc_table(rows, settings.qc)
    by_sample = pairs.set_index("sample")
    montages = {}
    for row in subject_montages(table).to_dict("records"):
        pair = by_sample.loc[row["sample"]]
        t1 = np.asarray(nib.load(pair["T1w"]).dataobj, dtype=np.float32)
        mask = np.asarray(nib.load(pair["mask"]).dataobj) > 0
        falff = np.asarray(nib.load(pair["fALFF"]).dataobj, dtype=np.float32) if pair.get("fALFF") else None
        png = Path(args.montage_dir) / f"sub-{row['subject']}.png"
        write_montage(t1, mask, falff, png, title=f"sub-{row['subject']}  (pair {row['sample']})")
        montages[row["subject"]] = str(png)
    table["montage"] = table["subject"].map(montages)
    save_tsv(table, args.out_tsv)
    write_html(table, args.out_html)


# ---------------------------------------------------------------------------------------
# argparse
# ---------------------------------------------------------------------------------------


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register t1-to-mni, falff-to-mni, preproc-pairs, landmarks, pack and qc; each sets
    ``func`` returning an exit status (3: bad input without ``--excluded``)."""
    p = sub.add_parser("t1-to-mni", help="skull-strip + affine-register a T1w to 3 mm MNI (64^3)")
    p.add_argument("--t1", required=True, help="native T1w NIfTI")
    p.add_argument("--backend", choices=BACKENDS, help="overrides preprocess.backend")
    p.add_argument("--out-t1", required=True, help="..._space-MNI152NLin2009aSym_res-3mm_desc-brain_T1w.nii.gz")
    p.add_argument("--out-mask", required=True, help="..._space-MNI152NLin2009aSym_res-3mm_desc-brain_mask.nii.gz")
    p.add_argument("--out-xfm", required=True, help="..._from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.txt (or .tfm)")
    p.add_argument("--out-qc", help="JSON with mask_volume_ml and similarity_t1")
    p.add_argument("--excluded", help="TSV (subject, session, path, reason) for bad input; see _guarded")
    p.add_argument("--settings-json", help="preprocess config section as JSON string or file")
    p.set_defaults(func=lambda a: _guarded(_t1_to_mni, a))

    p = sub.add_parser("falff-to-mni", help="register the mean EPI to MNI and move the fALFF map to 3 mm (64^3)")
    p.add_argument("--falff", required=True, help="native fALFF map")
    p.add_argument("--mean-epi", required=True, help="native mean EPI (same grid as --falff)")
    p.add_argument("--epi-mask", help="native EPI brain mask (same grid)")
    p.add_argument("--backend", choices=BACKENDS, help="overrides preprocess.backend")
    p.add_argument("--out", required=True, help="..._space-MNI152NLin2009aSym_res-3mm_desc-falff_boldmap.nii.gz")
    p.add_argument("--out-mask", help="grid mask of valid fALFF voxels (template brain within the EPI mask)")
    p.add_argument("--out-xfm", required=True, help="..._from-boldref_to-MNI152NLin2009aSym_mode-image_xfm.txt")
    p.add_argument("--out-qc", help="JSON with similarity_epi and falff_mean_in_brain")
    p.add_argument("--excluded", help="TSV (subject, session, path, reason) for bad input")
    p.add_argument("--settings-json", help="preprocess config section as JSON string or file")
    p.set_defaults(func=lambda a: _guarded(_falff_to_mni, a))

    p = sub.add_parser("preproc-pairs", help="pairs table of the preprocessed volumes (input of landmarks, pack, qc)")
    p.add_argument("--pairs", required=True, help="discovery's pairs TSV (pair_id, subject, t1_path, bold_path, label, ...)")
    p.add_argument("--preproc-dir", required=True, help="results/{dataset}/preproc")
    p.add_argument("--excluded", help="excluded.tsv: pairs whose inputs are listed are dropped")
    p.add_argument("--out", required=True)
    p.set_defaults(func=lambda a: _preproc_pairs(a) or 0)

    p = sub.add_parser("landmarks", help="histogram landmarks of one modality from one fold's training subjects")
    p.add_argument("--pairs", required=True, help="pairs TSV: sample, subject, T1w, fALFF, mask[, mask_fALFF]")
    p.add_argument("--splits", required=True, help="the fold's split TSV (subject, label, split)")
    p.add_argument("--modality", required=True, choices=("T1w", "fALFF"))
    p.add_argument("--out", required=True, help="landmarks .npy")
    p.set_defaults(func=lambda a: _landmarks(a) or 0)

    p = sub.add_parser("pack", help="standardise every pair with the fold's landmarks into a packed store")
    p.add_argument("--pairs", required=True)
    p.add_argument("--splits", required=True)
    p.add_argument("--landmarks-t1", required=True)
    p.add_argument("--landmarks-falff", required=True)
    p.add_argument("--out-dir", required=True, help="store folder (index.tsv, sources.json, T1w.npy, fALFF.npy)")
    p.add_argument("--settings-json", help="preprocess config section as JSON string or file")
    p.set_defaults(func=lambda a: _pack(a) or 0)

    p = sub.add_parser("qc", help="montages, qc.tsv and one HTML page")
    p.add_argument("--pairs", required=True, help="pairs TSV with T1w, mask, fALFF and T1w_qc / fALFF_qc JSON columns")
    p.add_argument("--out-tsv", required=True, help="results/{dataset}/qc/qc.tsv")
    p.add_argument("--out-html", required=True, help="results/{dataset}/qc/index.html")
    p.add_argument("--montage-dir", required=True, help="folder for one PNG per row")
    p.add_argument("--settings-json", help="preprocess config section as JSON string or file")
    p.set_defaults(func=lambda a: _qc(a) or 0)
