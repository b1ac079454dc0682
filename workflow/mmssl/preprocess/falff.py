"""(Fractional) amplitude of low-frequency fluctuations (fALFF, ALFF) of a resting-state BOLD run.

Per voxel, after dropping ``dummy_volumes`` non-steady-state volumes and removing a
polynomial trend (linear by default, quadratic as an option), the amplitude spectrum
``|rfft(x)|`` at frequencies ``f_k = k / (T * TR)`` gives::

    fALFF = sum(|X_k| for band[0] <= f_k <= band[1]) / sum(|X_k| for 0 < f_k <= Nyquist)
    ALFF  = (2 / T) * sum(|X_k| for band[0] <= f_k <= band[1])

fALFF is AFNI 3dRSFC's convention (amplitude, not power; the DC bin excluded from both
sums; band edges inclusive). ALFF is the same numerator without the ratio: each
``2 |X_k| / T`` is the amplitude of the sinusoid at ``f_k`` (a cosine of amplitude A on
a bin gives exactly A), so ALFF is in the BOLD signal's own units (hence scanner- and
subject-dependent; the per-fold histogram standardisation of the store takes that out)
and does not grow with the run's length. ``include_nyquist=False`` leaves the bin at exactly Nyquist
(present when T is even) out of the denominator. A voxel whose detrended series is
identically zero gets 0. No taper window is applied: a pure sinusoid between two bins
leaks into every bin, so an in-band sinusoid scores ~0.85-0.95 rather than exactly 1.

Length criterion: the frequency resolution 1 / (T * TR) must be at most the lower band
edge, i.e. T >= 1 / (band[0] * TR) volumes after dropping dummies (46 for TR 2.2 s and
0.01 Hz), so that the first non-DC bin lies at or below the band; the band must also hold
at least one bin and its upper edge must not exceed Nyquist (1 / (2 TR)).

The spectrum is computed for all masked voxels at once (chunks of voxels x time, float32:
fALFF is a ratio of sums of ~80 amplitudes, so float32 keeps ~1e-6 relative accuracy).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import scipy.fft

from mmssl.io import atomic_path
from mmssl.errors import BadInputError
from mmssl.preprocess.header import read_data, read_header

_CHUNK_VOXELS = 8192  # (8192, ~160) float32 blocks (~5 MB) stay in cache; a whole brain at once does not
_TIME_UNIT_SECONDS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


class TooFewVolumesError(ValueError):
    """The series is too short (or TR too long) to resolve the configured band."""


class TRFromHeaderWarning(UserWarning):
    """TR was taken from the NIfTI header because no sidecar gave RepetitionTime."""


@dataclass(frozen=True)
class FalffSettings:
    """fALFF options (config section ``falff``, keys of the same names; defaults: the config
    schema).

    band: (low, high) Hz, inclusive. dummy_volumes: leading volumes dropped.
    detrend_order: 0 (mean only), 1 (linear) or 2 (quadratic). include_nyquist: count the
    bin at exactly Nyquist in the denominator. tr_tolerance: relative sidecar/header TR
    disagreement tolerated.
    """

    band: tuple[float, float]
    dummy_volumes: int
    detrend_order: int
    include_nyquist: bool
    tr_tolerance: float

    def __post_init__(self) -> None:
        low, high = self.band
        if not 0 < low < high:
            raise ValueError(f"falff band must satisfy 0 < low < high Hz, got {self.band}")
        if self.detrend_order not in (0, 1, 2):
            raise ValueError(f"falff detrend_order must be 0, 1 or 2, got {self.detrend_order}")
        if self.dummy_volumes < 0:
            raise ValueError(f"falff dummy_volumes must be >= 0, got {self.dummy_volumes}")

    @classmethod
    def from_config(cls, settings: Mapping[str, Any] | None) -> FalffSettings:
        """From the ``falff`` section: the keys it leaves out take the schema's defaults; an
        unknown key or a wrong value raises ValueError naming it."""
        from mmssl.schema import section_values

        values = section_values("falff", settings, "falff")
        values["band"] = tuple(float(b) for b in values["band"])
        return cls(**values)


def spectrum_slices(n_volumes: int, tr: float, settings: FalffSettings) -> tuple[slice, slice]:
    """rfft bin ranges (numerator band, denominator 0 < f <= Nyquist) for ``n_volumes`` samples.

    Raises TooFewVolumesError under the criterion in the module docstring.
    """
    resolution = 1.0 / (n_volumes * tr)
    low, high = settings.band
    nyquist = 0.5 / tr
    if resolution > low:
        needed = math.ceil(1.0 / (low * tr) - 1e-9)
        raise TooFewVolumesError(
            f"{n_volumes} volumes at TR {tr:g} s give a frequency resolution of {resolution:.4g} Hz, coarser than "
            f"the band's lower edge {low:g} Hz; need at least {needed} volumes after dropping dummies")
    if high > nyquist + 1e-12:
        raise TooFewVolumesError(f"band upper edge {high:g} Hz exceeds Nyquist {nyquist:.4g} Hz at TR {tr:g} s")
    freqs = scipy.fft.rfftfreq(n_volumes, tr)
    in_band = np.flatnonzero((freqs >= low - 1e-12) & (freqs <= high + 1e-12))
    if in_band.size == 0:
        raise TooFewVolumesError(f"no frequency bin of {n_volumes} volumes at TR {tr:g} s falls in {settings.band} Hz")
    last = len(freqs) - 1
    has_nyquist_bin = n_volumes % 2 == 0
    stop = last + 1 if settings.include_nyquist or not has_nyquist_bin else last
    return slice(int(in_band[0]), int(in_band[-1]) + 1), slice(1, stop)


def _trend_basis(n_volumes: int, order: int) -> np.ndarray:
    """Orthonormal polynomial basis (n_volumes, order + 1): projecting onto it removes the trend."""
    t = np.linspace(-1.0, 1.0, n_volumes)
    q, _ = np.linalg.qr(np.vander(t, order + 1, increasing=True))
    return q.astype(np.float32)


def falff_timeseries(series: np.ndarray, tr: float, settings: FalffSettings | None = None) -> np.ndarray:
    """fALFF of each row of ``series`` (V, T) already stripped of dummy volumes -> (V,) float32
    (``settings`` None: the schema's ``falff`` defaults)."""
    return amplitude_timeseries(series, tr, settings)[0]


def amplitude_timeseries(series: np.ndarray, tr: float, settings: FalffSettings | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(fALFF, ALFF) of each row of ``series`` (V, T) already stripped of dummy volumes ->
    two (V,) float32 arrays (``settings`` None: the schema's ``falff`` defaults)."""
    settings = settings or FalffSettings.from_config({})
    n_voxels, n_volumes = series.shape
    band, total = spectrum_slices(n_volumes, tr, settings)
    basis = _trend_basis(n_volumes, settings.detrend_order)
    out = np.empty((2, n_voxels), dtype=np.float32)
    for start in range(0, n_voxels, _CHUNK_VOXELS):
        block = np.array(series[start:start + _CHUNK_VOXELS], dtype=np.float32)
        out[:, start:start + len(block)] = _amplitude_block(block, basis, band, total)
    return out[0], out[1]


def _amplitude_block(block: np.ndarray, basis: np.ndarray, band: slice, total: slice) -> tuple[np.ndarray, np.ndarray]:
    """(fALFF, ALFF) of a (c, T) float32 block (modified in place), two (c,) float32 arrays."""
    # Centre with a float64 mean first: BOLD baselines (~1e3) dwarf the fluctuations, and
    # the float32 projection below is then accurate to ~1e-7 of the fluctuation size.
    block -= block.mean(axis=1, dtype=np.float64).astype(np.float32)[:, None]
    scale = np.abs(block).max(axis=1)
    block -= (block @ basis) @ basis.T
    amplitude = np.abs(scipy.fft.rfft(block, axis=1, workers=1))
    numerator = amplitude[:, band].sum(axis=1)
    denominator = amplitude[:, total].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = numerator / denominator
    # A series that is all trend leaves only float32 rounding (~1e-7 of its range) after
    # detrending; its "spectrum" is noise, so such voxels (and constant ones) get 0.
    flat = denominator <= 1e-5 * scale * block.shape[1]
    alff = numerator * (2.0 / block.shape[1])
    return np.where(flat, 0.0, ratio).astype(np.float32), np.where(flat, 0.0, alff).astype(np.float32)


def falff(data: np.ndarray, tr: float, mask: np.ndarray | None = None, settings: FalffSettings | None = None) -> np.ndarray:
    """fALFF map of a 4D series.

    data: (X, Y, Z, T) including the dummy volumes (``settings.dummy_volumes`` are dropped);
    mask: (X, Y, Z) bool, None = every voxel. Returns (X, Y, Z) float32, 0 outside the mask.
    settings: None = the schema's ``falff`` defaults.
    Raises ValueError for a non-4D array or non-finite masked values, TooFewVolumesError.
    """
    return amplitude_maps(data, tr, mask, settings)[0]


def amplitude_maps(data: np.ndarray, tr: float, mask: np.ndarray | None = None,
                   settings: FalffSettings | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(fALFF, ALFF) maps of a 4D series, in one pass over the data (module docstring).

    data: (X, Y, Z, T) including the dummy volumes; mask: (X, Y, Z) bool, None = every
    voxel. Returns two (X, Y, Z) float32 maps, 0 outside the mask. Raises as :func:`falff`.
    """
    settings = settings or FalffSettings.from_config({})
    if data.ndim != 4:
        raise ValueError(f"falff expects a 4D (X, Y, Z, T) array, got shape {data.shape}")
    skip = settings.dummy_volumes
    n_volumes = data.shape[3] - skip
    band, total = spectrum_slices(n_volumes, tr, settings)  # fail before touching the data
    basis = _trend_basis(n_volumes, settings.detrend_order)
    mask = np.ones(data.shape[:3], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != data.shape[:3]:
        raise ValueError(f"mask shape {mask.shape} does not match data shape {data.shape[:3]}")
    # Index voxels in the array's own memory order so that reshape is a view (nibabel
    # returns Fortran-ordered arrays; a C-order reshape would copy the whole series).
    order = "F" if data.flags.f_contiguous and not data.flags.c_contiguous else "C"
    flat = data.reshape(-1, data.shape[3], order=order)
    voxels = np.flatnonzero(mask.reshape(-1, order=order))
    values = np.empty((2, voxels.size), dtype=np.float32)
    for start in range(0, voxels.size, _CHUNK_VOXELS):
        block = np.array(flat[voxels[start:start + _CHUNK_VOXELS], skip:], dtype=np.float32)
        if not np.isfinite(block).all():
            raise ValueError("non-finite (NaN or inf) values in masked voxels")
        values[:, start:start + len(block)] = _amplitude_block(block, basis, band, total)
    maps = []
    for row in values:
        out = np.zeros(mask.size, dtype=np.float32)
        out[voxels] = row
        maps.append(out.reshape(mask.shape, order=order))
    return maps[0], maps[1]


def mean_epi_mask(data: np.ndarray, affine: np.ndarray | None = None) -> np.ndarray:
    """Brain mask (X, Y, Z) bool from the temporal mean of ``data`` (X, Y, Z, T) or a mean image (X, Y, Z).

    nilearn's compute_epi_mask: histogram cut between dark background and bright brain,
    largest connected component, morphological opening.
    """
    from nilearn.masking import compute_epi_mask  # nilearn import is slow (~1.5 s); only pay it here

    mean = data.mean(axis=3, dtype=np.float64) if data.ndim == 4 else np.asarray(data, dtype=np.float64)
    image = nib.Nifti1Image(mean.astype(np.float32), np.eye(4) if affine is None else affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Computed an empty mask" is checked by the caller
        mask = compute_epi_mask(image)
    return np.asarray(mask.get_fdata(), dtype=bool)


@dataclass(frozen=True)
class GivenTR:
    """A RepetitionTime resolved elsewhere (discovery merges the run's sidecars by the BIDS
    inheritance principle) and the file that gave it, for messages."""

    seconds: float
    source: str


def read_tr(nifti_path: str | Path, sidecar_path: str | Path | GivenTR | None, tolerance: float) -> float:
    """Repetition time in seconds: the metadata's RepetitionTime (a :class:`GivenTR`, or
    the sidecar file's), else the header (with a warning).

    The header TR is pixdim[4] in its xyzt_units time unit (seconds assumed when unknown).
    Both present and differing by more than ``tolerance`` (relative) -> BadInputError; so is
    no usable TR anywhere, and an unreadable sidecar.
    """
    header_tr = _header_tr(nifti_path)
    if isinstance(sidecar_path, GivenTR):
        sidecar_tr, sidecar_path = sidecar_path.seconds, sidecar_path.source
    else:
        sidecar_tr = _sidecar_tr(sidecar_path) if sidecar_path else None
    if sidecar_tr is None:
        if header_tr is None:
            raise BadInputError(nifti_path, "missing TR: no RepetitionTime in a sidecar and no time step in the header")
        warnings.warn(f"{nifti_path}: no sidecar RepetitionTime; using the header TR {header_tr:g} s", TRFromHeaderWarning, stacklevel=2)
        return header_tr
    if header_tr is not None and abs(header_tr - sidecar_tr) > tolerance * sidecar_tr:
        raise BadInputError(nifti_path, f"TR disagreement: sidecar {sidecar_path} says {sidecar_tr:g} s, header says {header_tr:g} s "
                                        f"(tolerance {tolerance:.0%})")
    return sidecar_tr


def _sidecar_tr(sidecar_path: str | Path) -> float | None:
    """RepetitionTime from a JSON sidecar, None if the key is absent."""
    try:
        meta = json.loads(Path(sidecar_path).read_text())
    except (OSError, ValueError) as error:
        raise BadInputError(sidecar_path, f"unreadable JSON sidecar: {error}") from error
    if not isinstance(meta, dict) or "RepetitionTime" not in meta:
        return None
    tr = meta["RepetitionTime"]
    if not isinstance(tr, (int, float)) or isinstance(tr, bool) or not tr > 0:
        raise BadInputError(sidecar_path, f"RepetitionTime must be a positive number of seconds, got {tr!r}")
    return float(tr)


def _header_tr(nifti_path: str | Path) -> float | None:
    """TR in seconds from pixdim[4] and xyzt_units; None when the header has no positive time step."""
    header = read_header(nifti_path).header
    zooms = header.get_zooms()
    if len(zooms) < 4 or not zooms[3] > 0:
        return None
    unit = header.get_xyzt_units()[1]
    return float(zooms[3]) * _TIME_UNIT_SECONDS.get(unit, 1.0)


@dataclass
class FalffResult:
    """What falff_file computed: TR used (s), volumes after dummies, mask voxels, median
    fALFF (and ALFF) in the mask, and two confounds per volume of the whole series (dummies
    included, shape (T,)): the global signal (mean over the EPI mask) and DVARS (root mean
    square over the mask of the change from the previous volume; NaN for the first)."""

    tr: float
    n_volumes: int
    n_mask_voxels: int
    median_falff: float
    median_alff: float
    global_signal: np.ndarray
    dvars: np.ndarray


def falff_file(
    bold_path: str | Path,
    sidecar: str | Path | None,
    out_path: str | Path,
    mask_out_path: str | Path,
    mean_out_path: str | Path,
    settings: FalffSettings | None = None,
    alff_out_path: str | Path | None = None,
) -> FalffResult:
    """Read a BOLD run, write its fALFF map, EPI brain mask and mean EPI (NIfTI, the run's
    affine), and its ALFF map when ``alff_out_path`` is given.

    Raises BadInputError(bold_path, reason) for input to exclude: unreadable/corrupt file,
    not 4D, missing/inconsistent TR, too few volumes, non-finite values, empty brain mask.
    ``settings`` None: the schema's ``falff`` defaults.
    """
    settings = settings or FalffSettings.from_config({})
    image = read_header(bold_path)
    if len(image.shape) != 4 or image.shape[3] < 2:
        raise BadInputError(bold_path, f"expected a 4D BOLD series, got shape {image.shape}")
    tr = read_tr(bold_path, sidecar, settings.tr_tolerance)
    n_volumes = image.shape[3] - settings.dummy_volumes
    try:
        spectrum_slices(n_volumes, tr, settings)
    except TooFewVolumesError as error:
        raise BadInputError(bold_path, f"too few volumes: {error}") from error
    series = read_data(image, bold_path)
    data = series[..., settings.dummy_volumes:]
    if not np.isfinite(data).all():
        raise BadInputError(bold_path, f"{int((~np.isfinite(data)).sum())} NaN or inf values")
    mean = data.mean(axis=3, dtype=np.float64).astype(np.float32)
    mask = mean_epi_mask(mean, image.affine)
    if not mask.any():
        raise BadInputError(bold_path, "empty brain mask from the mean EPI")
    values, alff = amplitude_maps(data, tr, mask, replace(settings, dummy_volumes=0))
    outputs = [(values, out_path), (mask.astype(np.uint8), mask_out_path), (mean, mean_out_path)]
    for array, path in outputs + ([(alff, alff_out_path)] if alff_out_path is not None else []):
        save_like(array, image, path)
    inside = series[mask]  # (voxels, T)
    dvars = np.concatenate([[np.nan], np.sqrt(np.mean(np.diff(inside.astype(np.float64), axis=1) ** 2, axis=0))])
    return FalffResult(tr=tr, n_volumes=n_volumes, n_mask_voxels=int(mask.sum()), median_falff=float(np.median(values[mask])),
                       median_alff=float(np.median(alff[mask])), global_signal=inside.mean(axis=0, dtype=np.float64), dvars=dvars)


def save_like(array: np.ndarray, reference: nib.Nifti1Image, path: str | Path) -> Path:
    """Write a 3D array with the reference's affine and qform/sform codes, atomically."""
    path = Path(path)
    header = reference.header
    image = nib.Nifti1Image(array, reference.affine)
    image.header.set_qform(header.get_qform(), code=int(header["qform_code"]) or 1)
    image.header.set_sform(header.get_sform(), code=int(header["sform_code"]) or 1)
    image.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return path
