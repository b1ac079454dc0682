"""The one table of the MRI modalities the workflow knows: everything code decides per modality.

Two words, one meaning each, everywhere in the package:

* **modality**: a raw BIDS suffix, the kind of scan one preprocessing job reads (``T1w``,
  ``T2w``, ``FLAIR``, ``bold``);
* **source**: a model input, one volume on the MNI grid (``T1w``, ``T2w``, ``FLAIR``:
  the structural image itself; ``fALFF``, ``ALFF``: maps a ``bold`` run yields). Config
  key ``sources``; one array per source in the packed store.

:data:`MODALITIES` maps each modality to its :class:`Modality` entry: BIDS datatype, the
sources it yields, its preprocessing pipeline, what it is registered to, its QC tag and QC
fields, and the entity that tells its brain mask apart. Adding a structural modality
(e.g. ``PDw``) is one entry here, plus the config schema's enums and keys that a test
(``tests/test_modalities.py``) checks against this table and names when they are missing.

This module is at the top of the package and imports nothing of it, so every layer
(paths, bids, preprocess, data) may ask it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# the two preprocessing pipelines (mmssl.preprocess.pipeline): one image -> skull strip,
# 12-dof affine, 3 mm grid; one BOLD run -> fALFF/ALFF in native space, mean EPI registered
STRUCTURAL_PIPELINE = "structural"
FUNCTIONAL_PIPELINE = "functional"


@dataclass(frozen=True)
class Modality:
    """One raw BIDS suffix and everything that depends on it.

    suffix: the raw BIDS suffix (the modality's name). datatype: BIDS folder, ``anat`` or
    ``func``. sources: the model inputs one scan yields, in the order of :data:`SOURCES`.
    optional_sources: those of ``sources`` whose derivatives a job writes only when the
    dataset's sources include them (ALFF). pipeline: :data:`STRUCTURAL_PIPELINE` or
    :data:`FUNCTIONAL_PIPELINE` (every one registers to nilearn's T1w MNI152 template: the
    Mattes-MI metric needs no matching contrast). registration: the ``preprocess`` config
    key of its registration settings. qc_tag: the ending of its QC metric, flag and
    threshold names (``similarity_<tag>``, ``low_similarity_<tag>``,
    ``min_similarity_<tag>``). xfm_from: the ``from`` entity of its transform (None: the
    suffix). A structural image's MNI-grid mask is :func:`mask_desc` of its suffix.
    """

    suffix: str
    datatype: str
    sources: tuple[str, ...]
    pipeline: str
    registration: str  # the name of a preprocess settings key (not a config value)
    qc_tag: str | None = None
    xfm_from: str | None = None
    optional_sources: tuple[str, ...] = ()

    @property
    def tag(self) -> str:
        """QC tag: given, or the suffix in lower case (``T2w`` -> ``t2w``)."""
        return self.qc_tag or self.suffix.lower()

    @property
    def mask(self) -> str:
        """``desc`` of the MNI-grid mask derivative."""
        return mask_desc(self.suffix)

    @property
    def xfm_source(self) -> str:
        """``from`` entity of the template -> native transform."""
        return self.xfm_from or self.suffix

    @property
    def structural(self) -> bool:
        return self.pipeline == STRUCTURAL_PIPELINE

    @property
    def qc_fields(self) -> tuple[str, ...]:
        """The QC metrics of its scans that the QC page shows, in column order (its job's QC
        JSON holds these, the optimiser's ``registration_metric_<tag>`` and the header
        checks' fields). A structural image: native brain-mask volume (ml) and NMI with the
        template after registration; a BOLD run: the mean EPI's NMI and coverage, the maps'
        means in the brain and the mean framewise displacement."""
        if self.structural:
            return (f"mask_volume_ml_{self.tag}", f"similarity_{self.tag}")
        return (f"similarity_{self.tag}", f"coverage_{self.tag}", "falff_mean_in_brain", "alff_mean_in_brain", "mean_fd")


def _structural(suffix: str, **kwargs: str) -> Modality:
    return Modality(suffix, "anat", (suffix,), STRUCTURAL_PIPELINE, "registration", **kwargs)


# THE table. Order matters: it is the order of SOURCES (config enum), of discovery's
# per-modality columns and of the QC page's metric columns.
MODALITIES: dict[str, Modality] = {m.suffix: m for m in (
    _structural("T1w"),
    _structural("T2w"),
    _structural("FLAIR"),
    Modality("bold", "func", ("fALFF", "ALFF"), FUNCTIONAL_PIPELINE, "registration_epi",
             qc_tag="epi", xfm_from="boldref", optional_sources=("ALFF",)),
)}


def mask_desc(suffix: str) -> str:
    """``desc`` of a structural image's MNI-grid mask: ``brain<suffix>``. A T2w may share
    every entity of its session's T1w, so every structural mask names its suffix, the T1w's
    too, and one rule with a ``{suffix}`` wildcard (``suffix`` may be one) writes them all."""
    return f"brain{suffix}"


def modality(suffix: str) -> Modality:
    """The entry of raw suffix ``suffix``; ValueError naming the known ones otherwise."""
    try:
        return MODALITIES[suffix]
    except KeyError:
        raise ValueError(f"unknown modality (raw BIDS suffix) {suffix!r}; expected one of {', '.join(MODALITIES)}") from None


def structural_modalities() -> tuple[str, ...]:
    """The raw suffixes of the structural pipeline, in table order (T1w, T2w, FLAIR)."""
    return tuple(m.suffix for m in MODALITIES.values() if m.structural)


def functional_modalities() -> tuple[str, ...]:
    """The raw suffixes of the functional pipeline (bold)."""
    return tuple(m.suffix for m in MODALITIES.values() if not m.structural)


def all_sources() -> tuple[str, ...]:
    """Every source, structural ones first, in table order: T1w, T2w, FLAIR, fALFF, ALFF."""
    ordered = sorted(MODALITIES.values(), key=lambda m: not m.structural)
    return tuple(s for m in ordered for s in m.sources)


def modality_of(source: str) -> Modality:
    """The modality a source comes from (T1w -> T1w, fALFF -> bold); ValueError naming
    the allowed sources otherwise."""
    for entry in MODALITIES.values():
        if source in entry.sources:
            return entry
    raise ValueError(f"unknown source {source!r}; a source is one of {', '.join(all_sources())}")


def is_structural_source(source: str) -> bool:
    """Whether ``source`` is a structural image (False for a BOLD map or an unknown name)."""
    return any(source in m.sources for m in MODALITIES.values() if m.structural)


def modalities_of(sources: Iterable[str]) -> list[str]:
    """The raw suffixes ``sources`` need, in the order of their first source (a BOLD run
    once, however many maps it gives): ``[T1w, fALFF, ALFF]`` -> ``[T1w, bold]``."""
    out: list[str] = []
    for source in sources:
        suffix = modality_of(source).suffix
        if suffix not in out:
            out.append(suffix)
    return out


def sources_of(suffix: str, sources: Iterable[str]) -> list[str]:
    """The sources among ``sources`` that the raw suffix ``suffix`` gives."""
    return [s for s in sources if modality_of(s).suffix == suffix]


def present_column(source: str) -> str:
    """The store index's (and qc.tsv's) column marking the samples that have ``source``:
    ``has_<source>``."""
    return f"has_{source}"


def mask_column(source: str) -> str:
    """The one name of ``source``'s mask column in a samples table: ``mask_<source>``."""
    return f"mask_{source}"


def source_columns(source: str) -> tuple[str, str, str]:
    """(volume, mask, QC JSON) columns of ``source`` in a preprocessed samples table."""
    return source, mask_column(source), f"{source}_qc"
