"""Settings of the ``preprocess`` config section (the ``falff`` section has its own,
:class:`mmssl.preprocess.falff.FalffSettings`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mmssl.preprocess.header import HeaderLimits
from mmssl.preprocess.masking import BACKENDS, MaskSettings
from mmssl.preprocess.qc import QcThresholds
from mmssl.preprocess.registration import RegistrationSettings
from mmssl.preprocess.spatial import GridSettings
from mmssl.settings import check_keys

# Mean EPIs are 3-5 mm and point-sampled; keeping some smoothing at the finest level and
# a coarser joint histogram halves their error on the synthetic data (mean displacement
# 1.9 -> 0.8 mm over 4 subjects x 3 seeds, 5 mm EPI). T1w keeps the sharp defaults (0.15 mm).
EPI_REGISTRATION = RegistrationSettings(bins=16, smoothing_sigmas=(2.0, 1.0, 1.0))


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
    names no motion correction. header: plausible ranges of the T1w and BOLD headers,
    per kind (see :class:`HeaderLimits`).
    """

    backend: str = "python"
    registration: RegistrationSettings = field(default_factory=RegistrationSettings)
    registration_epi: RegistrationSettings = field(default_factory=lambda: EPI_REGISTRATION)
    grid: GridSettings = field(default_factory=GridSettings)
    brain_mask: MaskSettings = field(default_factory=MaskSettings)
    qc: QcThresholds = field(default_factory=QcThresholds)
    store_dtype: str = "float16"
    motion_correction: bool = False
    header: Mapping[str, HeaderLimits] = field(default_factory=lambda: {
        "T1w": HeaderLimits(voxel_mm=(0.3, 3.0), shape=(64, 512), sform_qform_tolerance_mm=1.0),
        "bold": HeaderLimits(voxel_mm=(1.0, 6.0), shape=(8, 256), sform_qform_tolerance_mm=1.0)})

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
            header=_header_limits(cfg.get("header", {}), cls().header),
        )


def _motion_correction(value: Any, backend: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"preprocess.motion_correction must be true or false, got {value!r}")
    if value and backend != "fsl":
        raise ValueError("preprocess.motion_correction: true runs FSL mcflirt and needs preprocess.backend: fsl "
                         f"(got backend {backend!r}); the python backend has no motion correction")
    return value


def _header_limits(cfg: dict[str, Any], base: Mapping[str, HeaderLimits]) -> dict[str, HeaderLimits]:
    """preprocess.header: {T1w: {voxel_mm, shape, sform_qform_tolerance_mm}, bold: {...}}:
    the plausible ranges of the input headers (see :mod:`mmssl.preprocess.header`)."""
    unknown = sorted(set(cfg) - {"T1w", "bold"})
    if unknown:
        raise ValueError(f"unknown preprocess.header key(s) {unknown}; allowed: ['T1w', 'bold']")
    out = dict(base)
    for key, values in cfg.items():
        limits = {**asdict(base[key]), **check_keys(HeaderLimits, values, f"preprocess.header.{key}")}
        out[key] = HeaderLimits(voxel_mm=tuple(limits["voxel_mm"]), shape=tuple(limits["shape"]),
                                sform_qform_tolerance_mm=float(limits["sform_qform_tolerance_mm"]))
    return out
