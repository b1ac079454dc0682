"""Settings of the ``preprocess`` config section (the ``falff`` section has its own,
:class:`mmssl.preprocess.falff.FalffSettings`). Every default lives in the config schema
(``$defs/preprocess`` and the definitions it refers to); the dataclasses have none."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmssl.preprocess.header import HeaderLimits
from mmssl.preprocess.masking import MaskSettings
from mmssl.preprocess.qc import QcThresholds
from mmssl.preprocess.registration import RegistrationSettings
from mmssl.preprocess.spatial import GridSettings


@dataclass(frozen=True)
class MriSettings:
    """The keys of config section ``preprocess`` (any other key is an error; fALFF's
    settings are their own section, ``falff``); see the schema for each key's meaning and
    default.

    backend: ``python`` or ``fsl``. registration / grid / brain_mask / qc: see
    :class:`RegistrationSettings`, :class:`GridSettings`, :class:`MaskSettings`,
    :class:`QcThresholds`. registration_epi: the registration of the mean EPI (same keys as
    registration, its own defaults). store_dtype: dtype of the packed store.
    motion_correction: run FSL ``mcflirt`` on each BOLD run before fALFF (FSL backend
    only; see :mod:`mmssl.preprocess.motion`). header: plausible ranges of the T1w and
    BOLD headers, per kind (see :class:`HeaderLimits`). min_coverage: the least share of
    the MNI brain mask a BOLD run's field of view must cover after registration.
    """

    backend: str
    registration: RegistrationSettings
    registration_epi: RegistrationSettings
    grid: GridSettings
    brain_mask: MaskSettings
    qc: QcThresholds
    store_dtype: str
    motion_correction: bool
    header: Mapping[str, HeaderLimits]
    min_coverage: float

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> MriSettings:
        """From the ``preprocess`` section: the keys it leaves out take the schema's
        defaults; an unknown key or a wrong value raises ValueError naming it."""
        from mmssl.schema import section_values

        values = section_values("preprocess", cfg, "preprocess")
        backend = values["backend"]
        if values["motion_correction"] and backend != "fsl":
            raise ValueError("preprocess.motion_correction: true runs FSL mcflirt and needs preprocess.backend: fsl "
                             f"(got backend {backend!r}); the python backend has no motion correction")
        return cls(
            backend=backend,
            registration=RegistrationSettings.from_config(values["registration"]),
            registration_epi=RegistrationSettings.from_config(values["registration_epi"], schema="registration_epi",
                                                              section="preprocess.registration_epi"),
            grid=GridSettings.from_config(values["grid"]),
            brain_mask=MaskSettings.from_config(values["brain_mask"]),
            qc=QcThresholds.from_config(values["qc"]),
            store_dtype=values["store_dtype"],
            motion_correction=values["motion_correction"],
            header={kind: _header_limits(limits, f"preprocess.header.{kind}") for kind, limits in values["header"].items()},
            min_coverage=float(values["min_coverage"]),
        )


def _header_limits(values: Mapping[str, Any], section: str) -> HeaderLimits:
    """One kind of ``preprocess.header`` (schema-valid, defaults filled in)."""
    try:
        return HeaderLimits(voxel_mm=tuple(values["voxel_mm"]), shape=tuple(values["shape"]),
                            sform_qform_tolerance_mm=float(values["sform_qform_tolerance_mm"]))
    except ValueError as err:
        raise ValueError(f"{section}: {err}") from err
