"""A small synthetic OASIS-3-shaped BIDS dataset, so the MRI branch runs offline and is testable.

Heads come from nilearn's bundled MNI152 template (2 mm, skull-stripped) plus a skull-like
shell (CSF gap, dark bone, bright scalp), and are placed in native scanner space by a known
random affine ``world_from_mni`` (rotation <= 10 deg per axis, translation <= 10 mm, scale
0.9-1.1 per axis): the native image at world point x shows the template at
``inv(world_from_mni) @ x``. The native voxel grids are axis-aligned LAS (x flipped, as
dcm2niix often writes), 2 mm for the structural images and ``bold_voxel_mm`` (5 mm) for
BOLD; every image of one session shares the session's head position, so
``world_from_mni`` moves them all.

Modalities: a T1w, a T2w (CSF bright, white matter dark) and, for every other subject, a
FLAIR (CSF dark, grey matter brighter than white) per session, all from the same head
(their tissue intensities are fixed functions of the template's T1w intensity, so AD
atrophy shows in each); one BOLD run per session (two for some subjects). Some subjects
lack a modality, as in OASIS-3 (see :func:`_plan`): subjects 3, 9, 15, ... have no BOLD
run, subjects 5, 11, 17, ... a BOLD run and no structural image. Ground truth goes to
``derivatives/truth/``:

- ``sub-X_ses-Y_T1w_affine.txt``: the 4x4 ``world_from_mni`` (MNI mm -> native world mm),
  which holds for every image of the session (the name is kept for a BOLD-only session);
- ``sessions.tsv``: per session the group, the modalities written (T1w, T2w, FLAIR: 0/1;
  bold_runs), angles, translation, scales and the T1w header affine (empty without a T1w);
- ``regions.tsv``: the spheres (MNI mm centre, radius) whose low-frequency BOLD amplitude is
  lowered in AD (factor ``lf_factor`` per group).

Structural images: intensity x bias field (smooth, multiplicative, ~+-20 %) with Rician
noise (in air only within ~6 mm of the head); AD heads have mild atrophy (T1w grey matter
~10 % darker, ventricles grown by 2 mm). BOLD: per brain voxel a band-limited (0.01-0.08 Hz) Gaussian
component (amplitude x ``LF_FACTOR[group]`` inside the spheres) plus white noise of equal
size, on a two-level baseline (tissue 100, CSF 115), with ``dummy_volumes`` brighter
non-steady-state volumes first (part of ``n_volumes``); 0 outside the brain. Values are
int16 with fluctuations of ~1.4 units, which keeps the gzip files small. The clinical table ``phenotype/OASIS3_UDSb4_cdr.csv`` has OASIS-3 UDS columns with
visits near each MR session (and a distant extra one). Everything is deterministic per seed.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from mmssl.io import atomic_dir

GENERATOR_NAME = "mmssl.data.synthetic"
CLINICAL_NAME = "phenotype/OASIS3_UDSb4_cdr.csv"
# Default-mode regions where AD lowers low-frequency BOLD amplitude: posterior cingulate /
# precuneus and both angular gyri (MNI mm), the classic AD fALFF findings.
REGIONS = (("pcc", (0.0, -56.0, 28.0)), ("angular_l", (-44.0, -64.0, 32.0)), ("angular_r", (44.0, -64.0, 32.0)))
REGION_RADIUS_MM = 14.0
LF_FACTOR = {"HC": 1.0, "AD": 0.35, "other": 0.7}
_DX = {"HC": ["Cognitively normal"], "AD": ["AD Dementia"], "other": ["uncertain dementia", "Non AD dem- Other primary"]}
_CDR = {"HC": [0.0], "AD": [0.5, 1.0], "other": [0.5, 0.0]}
_LAS = np.diag([-1.0, 1.0, 1.0, 1.0])
# Structural contrasts as piecewise-linear functions of the template's T1w intensity in the
# brain (CSF ~0.25, grey matter ~0.62, white matter ~0.87), and the skull-like shell's three
# layers (CSF gap, bone, scalp) in each contrast. None: the template's own intensities.
CONTRASTS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "T1w": None,
    "T2w": ((0.0, 0.3, 0.62, 0.87, 1.0), (1.0, 0.95, 0.65, 0.4, 0.35)),
    "FLAIR": ((0.0, 0.3, 0.62, 0.87, 1.0), (0.1, 0.15, 0.85, 0.6, 0.55)),
}
SHELL_LAYERS = {"T1w": (0.12, 0.04, 0.75), "T2w": (0.9, 0.03, 0.55), "FLAIR": (0.12, 0.03, 0.7)}
SIDECARS = {"T1w": {"RepetitionTime": 2.4, "EchoTime": 0.00316, "InversionTime": 1.0},
            "T2w": {"RepetitionTime": 3.2, "EchoTime": 0.408},
            "FLAIR": {"RepetitionTime": 4.8, "EchoTime": 0.441, "InversionTime": 1.65}}


@dataclass(frozen=True)
class _Template:
    """MNI head assets on a padded 2 mm grid: affine (4, 4), intensity/brain/gm/csf (X, Y, Z);
    layers: 0 brain, 1 CSF gap, 2 bone, 3 scalp, 4 air (X, Y, Z) int."""

    affine: np.ndarray
    t1: np.ndarray
    brain: np.ndarray
    gm: np.ndarray
    ventricles: np.ndarray
    layers: np.ndarray
    head: np.ndarray


@dataclass(frozen=True)
class _Options:
    """BOLD series shape and timing, and the gzip level of every image."""

    n_volumes: int
    tr: float
    dummy_volumes: int
    voxel_mm: float
    compresslevel: int = 6


@dataclass(frozen=True)
class _Session:
    """One MR session: its structural images (suffixes) and BOLD runs (0: none)."""

    subject: str
    session: str
    days: int
    group: str
    bold_runs: int
    header_tr_ms: bool
    structural: tuple[str, ...] = ("T1w", "T2w")


@functools.lru_cache(maxsize=1)
def _template(pad: int = 10) -> _Template:
    """Load the 2 mm MNI152 template and build the skull-like shell around its brain mask."""
    from nilearn import datasets  # slow import, only needed here

    image = datasets.load_mni152_template(resolution=2)
    pad_width = [(pad, pad)] * 3
    t1 = np.pad(image.get_fdata(dtype=np.float32), pad_width)
    brain = np.pad(datasets.load_mni152_brain_mask(resolution=2).get_fdata() > 0, pad_width)
    gm = np.pad(datasets.load_mni152_gm_mask(resolution=2).get_fdata() > 0, pad_width)
    affine = image.affine @ np.vstack([np.hstack([np.eye(3), -pad * np.ones((3, 1))]), [0, 0, 0, 1]])
    # Ventricles: dark voxels inside the brain near the centre (MNI |x| < 25 mm, -45 < y < 20, 0 < z < 30).
    mm = _voxel_mm(affine, t1.shape)
    central = (np.abs(mm[..., 0]) < 25) & (mm[..., 1] > -45) & (mm[..., 1] < 20) & (mm[..., 2] > 0) & (mm[..., 2] < 30)
    ventricles = brain & central & (t1 < 0.3)
    distance = ndimage.distance_transform_edt(~brain, sampling=2.0)
    layers = np.select([brain, distance <= 3, distance <= 9, distance <= 15], [0, 1, 2, 3], 4).astype(np.int8)
    return _Template(affine, t1 * brain, brain, gm, ventricles, layers, distance <= 15)


def _voxel_mm(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """World coordinates (X, Y, Z, 3) of every voxel centre."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(np.float32)
    return grid @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)


def random_world_from_mni(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """A random 4x4 MNI -> native world affine (translate @ rotate @ scale) and its parameters."""
    angles = rng.uniform(-10, 10, 3)
    translation = rng.uniform(-10, 10, 3)
    scales = rng.uniform(0.9, 1.1, 3)
    rx, ry, rz = np.deg2rad(angles)
    rot_x = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    rot_y = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    rot_z = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rot_z @ rot_y @ rot_x @ np.diag(scales)
    matrix[:3, 3] = translation
    params = {f"rot_{a}_deg": float(v) for a, v in zip("xyz", angles)}
    params |= {f"trans_{a}_mm": float(v) for a, v in zip("xyz", translation)}
    params |= {f"scale_{a}": float(v) for a, v in zip("xyz", scales)}
    return matrix, params


def _native_grid(world_from_mni: np.ndarray, mask: np.ndarray, mask_affine: np.ndarray, voxel_mm: float, margin_mm: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """An LAS voxel grid (affine, shape) that covers ``mask`` after moving it by ``world_from_mni``."""
    corners = np.array([[i, j, k, 1] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0)
    corners[:, :3] = lo + corners[:, :3] * (hi - lo)
    world = (world_from_mni @ mask_affine @ corners.T)[:3].T
    low, high = world.min(0) - margin_mm, world.max(0) + margin_mm
    shape = tuple(int(np.ceil((h - l) / voxel_mm)) + 1 for l, h in zip(low, high))
    affine = _LAS * voxel_mm
    affine[3, 3] = 1.0
    affine[:3, 3] = [high[0], low[1], low[2]]  # x runs right-to-left in LAS
    return affine, shape  # type: ignore[return-value]


def _sample(volume: np.ndarray, volume_affine: np.ndarray, world_from_mni: np.ndarray, grid_affine: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """``volume`` (in MNI) seen on a native grid: value at MNI point inv(world_from_mni) @ grid point."""
    voxel_from_voxel = np.linalg.inv(volume_affine) @ np.linalg.inv(world_from_mni) @ grid_affine
    return ndimage.affine_transform(volume.astype(np.float32), voxel_from_voxel[:3, :3], voxel_from_voxel[:3, 3],
                                    output_shape=tuple(shape), order=order, mode="constant", cval=0.0)


def _head_in_mni(template: _Template, group: str, rng: np.random.Generator, contrast: str = "T1w") -> np.ndarray:
    """Intensities (0..1) of a head in MNI space in ``contrast`` (a key of CONTRASTS); AD
    gets darker T1w grey matter and larger ventricles, which every contrast then shows."""
    t1 = template.t1.copy()
    if group == "AD":
        t1[template.gm] *= rng.uniform(0.88, 0.92)
        grown = ndimage.binary_dilation(template.ventricles) & template.brain
        t1[grown] = np.minimum(t1[grown], 0.15)
    mapping = CONTRASTS[contrast]
    brain = t1 if mapping is None else np.interp(t1, *mapping).astype(np.float32) * template.brain
    shell = np.choose(template.layers, (0.0, *SHELL_LAYERS[contrast], 0.0)).astype(np.float32)
    return brain + shell


def _bias_field(shape: Sequence[int], rng: np.random.Generator, strength: float = 0.2) -> np.ndarray:
    """Smooth multiplicative field exp(linear + quadratic terms) over the grid, about 1 +- strength."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    terms = [x, y, z, x * x - 1 / 3, y * y - 1 / 3, z * z - 1 / 3, x * y, y * z]
    coefs = rng.normal(0, 1, len(terms)).astype(np.float32)
    log_field = sum(c * t for c, t in zip(coefs, terms))
    return np.exp(strength * log_field / (np.abs(log_field).max() + 1e-6))


def _t1_image(template: _Template, group: str, world_from_mni: np.ndarray, rng: np.random.Generator,
              contrast: str = "T1w") -> nib.Nifti1Image:
    """Native-space structural image (int16, LAS, 2 mm) of one session, in ``contrast``
    (T1w, T2w or FLAIR)."""
    grid_affine, shape = _native_grid(world_from_mni, template.head, template.affine, 2.0, 4.0)
    head = _sample(_head_in_mni(template, group, rng, contrast), template.affine, world_from_mni, grid_affine, shape, order=1)
    head *= _bias_field(shape, rng)
    sigma = 0.015
    noisy = np.hypot(head + rng.normal(0, sigma, shape), rng.normal(0, sigma, shape))  # Rician magnitude
    # Air noise only within ~6 mm of the head, zero beyond: noise in the ~70 % of the box that
    # is air would double the file size (gzip codes noise at ~2 bits per voxel).
    envelope = ndimage.binary_dilation(head > 0.02, iterations=3)
    data = np.where(envelope, np.round(noisy * 200), 0).astype(np.int16)  # WM ~ 180, noise sigma 3 units
    image = nib.Nifti1Image(data, grid_affine)
    image.header.set_xyzt_units("mm", "sec")
    return image


def _band_limited(n_series: int, n_volumes: int, tr: float, band: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """(n_series, n_volumes) Gaussian noise restricted to ``band`` Hz, unit variance per series."""
    spectrum = np.fft.rfft(rng.standard_normal((n_series, n_volumes)), axis=1)
    freqs = np.fft.rfftfreq(n_volumes, tr)
    spectrum[:, (freqs < band[0]) | (freqs > band[1])] = 0
    series = np.fft.irfft(spectrum, n=n_volumes, axis=1)
    return series / series.std(axis=1, keepdims=True)


def _bold_image(template: _Template, group: str, world_from_mni: np.ndarray, options: _Options, header_tr_ms: bool,
                rng: np.random.Generator) -> nib.Nifti1Image:
    """Native-space 4D BOLD (int16, LAS, ``options.voxel_mm``) of one run."""
    n_volumes, tr, dummy_volumes, voxel_mm = options.n_volumes, options.tr, options.dummy_volumes, options.voxel_mm
    grid_affine, shape = _native_grid(world_from_mni, template.brain, template.affine, voxel_mm, 2 * voxel_mm)
    brain = _sample(template.brain, template.affine, world_from_mni, grid_affine, shape, order=1) > 0.5
    t1 = _sample(template.t1, template.affine, world_from_mni, grid_affine, shape, order=1)[brain]
    mni = (np.linalg.inv(world_from_mni) @ grid_affine)
    mm = _voxel_mm(mni, shape)[brain]
    in_region = np.zeros(len(mm), dtype=bool)
    for _, centre in REGIONS:
        in_region |= np.linalg.norm(mm - np.array(centre, dtype=np.float32), axis=1) <= REGION_RADIUS_MM
    lf_amplitude = np.where(in_region, LF_FACTOR[group], 1.0) * rng.uniform(0.9, 1.1)
    fluctuation = lf_amplitude[:, None] * _band_limited(len(t1), n_volumes, tr, (0.01, 0.08), rng)
    fluctuation += rng.standard_normal(fluctuation.shape)
    # Fluctuations of ~1.4 integer units and only two baseline levels (tissue, brighter CSF as in
    # T2*-weighted EPI): gzip codes the byte histogram, so every extra bit of spread costs ~12 %.
    baseline = np.where(t1 < 0.3, 115.0, 100.0)
    series = baseline[:, None] + fluctuation
    series[:, :dummy_volumes] *= 1.0 + 0.6 * np.exp(-np.arange(dummy_volumes) / 1.2)  # non-steady state
    data = np.zeros((*shape, n_volumes), dtype=np.int16)
    data[brain] = np.round(series).astype(np.int16)
    image = nib.Nifti1Image(data, grid_affine)
    image.header.set_xyzt_units("mm", "msec" if header_tr_ms else "sec")
    image.header.set_zooms((voxel_mm,) * 3 + (tr * 1000.0 if header_tr_ms else tr,))
    return image


def _save_gz(image: nib.Nifti1Image, path: Path, compresslevel: int) -> None:
    """Write ``.nii.gz`` with gzip mtime 0, so the bytes are identical for the same seed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=compresslevel, mtime=0))


def _write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")


def _group_list(n_subjects: int, groups: Sequence[str], proportions: Sequence[float], rng: np.random.Generator) -> list[str]:
    """Groups in the given proportions (largest remainder), shuffled."""
    share = np.asarray(proportions, dtype=float) / np.sum(proportions)
    counts = np.floor(share * n_subjects).astype(int)
    for i in np.argsort(-(share * n_subjects - counts), kind="stable")[: n_subjects - counts.sum()]:
        counts[i] += 1
    labels = [g for g, c in zip(groups, counts) for _ in range(c)]
    return [labels[i] for i in rng.permutation(n_subjects)]


def _plan(n_subjects: int, groups: Sequence[str], proportions: Sequence[float], rng: np.random.Generator) -> list[_Session]:
    """Sessions of every subject (numbered from 1). Subjects 2, 8, 14, ... have a second
    session ~2-3 years later, 4, 10, 16, ... two BOLD runs, 6, 12, 18, ... their header TR
    in ms (the sidecar in s); subjects 1, 3, 5, ... a FLAIR besides T1w and T2w. Single
    modality: subjects 3, 9, 15, ... have no BOLD run, 5, 11, 17, ... no structural image."""
    sessions = []
    for i, group in enumerate(_group_list(n_subjects, groups, proportions, rng)):
        subject = f"OAS3{i + 1:04d}"
        days = [int(rng.integers(0, 400))]
        if i % 6 == 1:
            days.append(days[0] + int(rng.integers(700, 1100)))
        structural = () if i % 6 == 4 else ("T1w", "T2w", "FLAIR") if i % 2 == 0 else ("T1w", "T2w")
        bold_runs = 0 if i % 6 == 2 else 2 if i % 6 == 3 else 1
        for day in days:
            sessions.append(_Session(subject, f"d{day:04d}", day, group, bold_runs, i % 6 == 5, structural))
    return sessions


def _clinical_rows(sessions: list[_Session], rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """OASIS-3 UDS-like visits (one near each session, one at entry, one far later) and participants."""
    visits, participants = [], []
    for subject, group_sessions in pd.Series(sessions).groupby([s.subject for s in sessions], sort=True):
        first = group_sessions.iloc[0]
        age, sex = float(rng.uniform(62, 85)), str(rng.choice(["M", "F"]))
        participants.append({"participant_id": f"sub-{subject}", "sex": sex, "age": round(age, 1), "group": first.group})
        k = int(rng.integers(len(_DX[first.group])))
        dx, cdr = _DX[first.group][k], _CDR[first.group][k]
        days = {0} | {max(0, s.days + int(rng.integers(-60, 61))) for s in group_sessions} | {group_sessions.iloc[-1].days + 1500}
        for day in sorted(days):
            visits.append({"OASISID": subject, "OASIS_session_label": f"{subject}_UDSb4_d{day:04d}", "days_to_visit": day,
                           "age at visit": round(age + day / 365.25, 2), "M/F": sex, "CDRTOT": cdr, "dx1": dx})
    return pd.DataFrame(visits), pd.DataFrame(participants)


def make_synthetic_bids(
    out_dir: str | Path,
    n_subjects: int = 12,
    seed: int = 0,
    groups: Sequence[str] = ("HC", "AD", "other"),
    proportions: Sequence[float] = (0.4, 0.4, 0.2),
    n_volumes: int = 160,
    tr: float = 2.2,
    dummy_volumes: int = 4,
    bold_voxel_mm: float = 5.0,
    bad_inputs: bool = False,
    compresslevel: int = 6,
) -> Path:
    """Write the dataset (see module docstring) into ``out_dir`` atomically; returns ``out_dir``.

    n_volumes counts the ``dummy_volumes``. bold_voxel_mm is 5 rather than OASIS-3's 4 to keep
    12 subjects near 30 MB (the BOLD gzip size scales with brain voxels x volumes).
    bad_inputs: add the defective subjects of ``BAD_INPUTS`` (listed with the step expected to
    exclude them in ``derivatives/truth/bad_inputs.tsv``) to exercise excluded.tsv end to end.
    compresslevel: gzip level (1 is ~5x faster to write, ~20 % larger; tests use it).

    An existing ``out_dir`` is replaced only if this generator wrote it (FileExistsError otherwise).
    """
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    with atomic_dir(out_dir) as tmp:
        rng = np.random.default_rng(seed)
        template = _template()
        sessions = _plan(n_subjects, groups, proportions, rng)
        options = _Options(n_volumes, tr, dummy_volumes, bold_voxel_mm, compresslevel)
        truth = [_write_session(tmp, template, s, options, rng) for s in sessions]
        visits, participants = _clinical_rows(sessions, rng)
        if bad_inputs:
            bad_visits, bad_participants = _write_bad_inputs(tmp, template, options, rng)
            visits = pd.concat([visits, bad_visits], ignore_index=True)
            participants = pd.concat([participants, bad_participants], ignore_index=True)
        (tmp / CLINICAL_NAME).parent.mkdir(parents=True, exist_ok=True)
        visits.to_csv(tmp / CLINICAL_NAME, index=False)
        participants.to_csv(tmp / "participants.tsv", sep="\t", index=False)
        pd.DataFrame(truth).to_csv(tmp / "derivatives/truth/sessions.tsv", sep="\t", index=False)
        regions = [{"region": n, "x": c[0], "y": c[1], "z": c[2], "radius_mm": REGION_RADIUS_MM} | {f"lf_factor_{g}": f for g, f in LF_FACTOR.items()}
                   for n, c in REGIONS]
        pd.DataFrame(regions).to_csv(tmp / "derivatives/truth/regions.tsv", sep="\t", index=False)
        _write_json(tmp / "dataset_description.json", {
            "Name": "mmssl synthetic OASIS-3-shaped dataset", "BIDSVersion": "1.8.0", "DatasetType": "raw",
            "GeneratedBy": [{"Name": GENERATOR_NAME, "Description": f"seed {seed}, {n_subjects} subjects"}]})
        _write_json(tmp / "derivatives/truth/dataset_description.json", {
            "Name": "ground truth of the synthetic dataset", "BIDSVersion": "1.8.0", "DatasetType": "derivative",
            "GeneratedBy": [{"Name": GENERATOR_NAME}]})
    return out_dir


# subject, defect, the step that must exclude it (discover | clinical | falff | header), its reason's key words.
# A defective scan makes only that modality absent: the subject's other scan stays a sample.
BAD_INPUTS = (
    ("OAS39901", "other_task_only", "discover", "no usable scan"),
    ("OAS39902", "short_bold", "falff", "too few volumes"),
    ("OAS39903", "truncated_bold", "falff", "corrupt NIfTI"),
    ("OAS39904", "bold_3d", "falff", "expected a 4D BOLD series"),
    ("OAS39905", "tr_mismatch", "falff", "TR disagreement"),
    ("OAS39906", "no_visit", "clinical", "nearest clinical visit"),
    ("OAS39907", "nan_affine_t1", "header", "non-finite sform"),
    ("OAS39908", "flipped_qform_t1", "header", "possible left-right flip"),
)


def _write_bad_inputs(root: Path, template: _Template, options: _Options, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the BAD_INPUTS subjects (HC heads, one session each, a T1w and a BOLD run; the
    other_task_only subject a task-nback BOLD run only); return their visits and participants."""
    short = replace(options, n_volumes=40)  # < 46 volumes after dummies
    small = replace(options, n_volumes=60)  # valid, just smaller files
    visits, participants, listing = [], [], []
    for subject, defect, step, reason in BAD_INPUTS:
        day = 2500 if defect == "no_visit" else 100
        prefix, folder = f"sub-{subject}_ses-d{day:04d}", root / f"sub-{subject}" / f"ses-d{day:04d}"
        world_from_mni, _ = random_world_from_mni(rng)
        if defect != "other_task_only":
            t1 = _t1_image(template, "HC", world_from_mni, rng)
            _save_gz(_bad_header(t1, defect), folder / "anat" / f"{prefix}_run-01_T1w.nii.gz", options.compresslevel)
        task = "nback" if defect == "other_task_only" else "rest"
        bold_path = folder / "func" / f"{prefix}_task-{task}_run-01_bold.nii.gz"
        bold = _bold_image(template, "HC", world_from_mni, short if defect == "short_bold" else small, False, rng)
        if defect == "bold_3d":
            bold = nib.Nifti1Image(np.asanyarray(bold.dataobj)[..., -1], bold.affine)
        _save_gz(bold, bold_path, options.compresslevel)
        if defect == "truncated_bold":
            bold_path.write_bytes(bold_path.read_bytes()[: bold_path.stat().st_size // 2])
        sidecar_tr = 2.0 if defect == "tr_mismatch" else options.tr
        _write_json(bold_path.with_name(bold_path.name.replace(".nii.gz", ".json")), {"RepetitionTime": sidecar_tr, "TaskName": task})
        t1_path = folder / "anat" / f"{prefix}_run-01_T1w.nii.gz"
        defective = t1_path if step == "header" else bold_path  # the file to exclude
        listing.append({"subject": subject, "session": f"d{day:04d}", "defect": defect, "excluded_by": step, "reason_contains": reason,
                        "path": str(defective.relative_to(root))})
        participants.append({"participant_id": f"sub-{subject}", "sex": "F", "age": 70.0, "group": "HC"})
        for visit_day in (0, 100):
            visits.append({"OASISID": subject, "OASIS_session_label": f"{subject}_UDSb4_d{visit_day:04d}", "days_to_visit": visit_day,
                           "age at visit": round(70 + visit_day / 365.25, 2), "M/F": "F", "CDRTOT": 0.0, "dx1": "Cognitively normal"})
    (root / "derivatives" / "truth").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(listing).to_csv(root / "derivatives/truth/bad_inputs.tsv", sep="\t", index=False)
    return pd.DataFrame(visits), pd.DataFrame(participants)


def _bad_header(image: nib.Nifti1Image, defect: str) -> nib.Nifti1Image:
    """The T1w with the header defect named (unchanged for other defects): a NaN in the sform
    (nibabel's own writer would fail on it, hence the header built by hand), or a qform that
    is the sform mirrored left-right (both codes set: which one is right cannot be told)."""
    if defect not in ("nan_affine_t1", "flipped_qform_t1"):
        return image
    header = image.header.copy()
    header.set_sform(image.affine, code=2)
    if defect == "nan_affine_t1":
        header.set_qform(None, code=0)
        header["srow_x"][0] = np.nan
    else:
        header.set_qform(image.affine @ np.diag([-1.0, 1.0, 1.0, 1.0]), code=1)
    return nib.Nifti1Image(np.asanyarray(image.dataobj), None, header=header)


def _check_replaceable(out_dir: Path) -> None:
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    description = out_dir / "dataset_description.json"
    try:
        generated = json.loads(description.read_text()).get("GeneratedBy", [{}])[0].get("Name")
    except (OSError, ValueError, AttributeError, IndexError):
        generated = None
    if generated != GENERATOR_NAME:
        raise FileExistsError(f"{out_dir} exists and was not written by {GENERATOR_NAME}; refusing to replace it")


def _write_session(root: Path, template: _Template, s: _Session, options: _Options, rng: np.random.Generator) -> dict:
    """Write one session's structural images, BOLD run(s), sidecars and ground truth; return its truth row."""
    world_from_mni, params = random_world_from_mni(rng)
    prefix = f"sub-{s.subject}_ses-{s.session}"
    folder = root / f"sub-{s.subject}" / f"ses-{s.session}"
    t1_affine = ""
    for suffix in s.structural:
        image = _t1_image(template, s.group, world_from_mni, rng, suffix)
        _save_gz(image, folder / "anat" / f"{prefix}_run-01_{suffix}.nii.gz", options.compresslevel)
        _write_json(folder / "anat" / f"{prefix}_run-01_{suffix}.json", SIDECARS[suffix])
        if suffix == "T1w":
            t1_affine = json.dumps(np.round(image.affine, 6).tolist())
    for run in range(1, s.bold_runs + 1):
        bold = _bold_image(template, s.group, world_from_mni, options, s.header_tr_ms, rng)
        _save_gz(bold, folder / "func" / f"{prefix}_task-rest_run-{run:02d}_bold.nii.gz", options.compresslevel)
        _write_json(folder / "func" / f"{prefix}_task-rest_run-{run:02d}_bold.json",
                    {"RepetitionTime": options.tr, "TaskName": "rest", "EchoTime": 0.027, "MagneticFieldStrength": 3})
    truth_dir = root / "derivatives" / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    np.savetxt(truth_dir / f"{prefix}_T1w_affine.txt", world_from_mni, fmt="%.10f")
    written = {suffix: int(suffix in s.structural) for suffix in CONTRASTS}
    return {"subject": s.subject, "session": s.session, "group": s.group, **written, "bold_runs": s.bold_runs, **params,
            "t1_header_affine": t1_affine}
