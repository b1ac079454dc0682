"""Quality control of the MNI-space volumes: montages, a QC table with flags, one HTML page.

Every structural modality ``M`` of :data:`mmssl.modalities.MODALITIES` has the QC tag
``m`` (its suffix in lower case: ``t1w``, ``t2w``, ``flair``); a BOLD run's is ``epi``.
Its metrics, flags and thresholds are named after the tag, the same way for each.

Flags (comma-separated in ``qc.tsv``'s ``flags`` column, empty when all is well):

* ``small_mask_<tag>`` / ``large_mask_<tag>`` (``small_mask_t1w``, ``large_mask_flair``,
  ...): the structural image's native brain-mask volume (``mask_volume_ml_<tag>``) outside
  [min_mask_ml, max_mask_ml] (a failed skull strip or registration);
* ``low_similarity_<tag>`` (``low_similarity_t1w``, ``_t2w``, ``_flair``, ``_epi``):
  normalised mutual information of the registered image with the template
  (``similarity_<tag>``) below ``min_similarity_<tag>`` (1 = unrelated). On the
  synthetic data a good T1w fit scores 1.28-1.35 and the same fit 5 mm off 1.08; a good
  T2w or FLAIR fit (contrast unlike the T1w template's) 1.21-1.29, 5 mm off 1.05; a good
  fit of a 5 mm mean EPI 1.10-1.11, 5 mm off 1.07, 10 mm off 1.04. Real data score
  differently: set the thresholds from the distribution in ``qc.tsv``;
* ``falff_out_of_range``: the mean fALFF in the brain is not finite or outside
  [min_falff_mean, max_falff_mean] (fALFF is a fraction in [0, 1]); only for a sample
  that has fALFF (``has_fALFF`` in its metrics, when given, is not 0);
* ``high_motion``: mean framewise displacement above ``max_mean_fd`` mm (only with
  ``preprocess.motion_correction``, which measures it; 0.5 mm is a common exclusion
  threshold for resting-state runs).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mmssl.io import atomic_path, write_text  # noqa: E402
from mmssl.modalities import MODALITIES, functional_modalities, is_structural_source, modality, structural_modalities  # noqa: E402
from mmssl.settings import schema_settings  # noqa: E402

# the first columns of qc.tsv: the primary structural modality's (T1w's) and the BOLD run's key metrics
QC_COLUMNS = ("subject", "sample", *MODALITIES[structural_modalities()[0]].qc_fields, *(f"similarity_{MODALITIES[m].tag}" for m in functional_modalities()),
              "falff_mean_in_brain", "flags", "montage")


def structural_metric_keys(suffix: str) -> tuple[str, str, str]:
    """(mask volume, similarity, registration metric) QC keys of a structural modality,
    named after its tag: ``mask_volume_ml_t1w, similarity_t1w, registration_metric_t1w``
    for the T1w, ``mask_volume_ml_t2w, similarity_t2w, registration_metric_t2w`` for a T2w, ..."""
    tag = modality(suffix).tag
    return f"mask_volume_ml_{tag}", f"similarity_{tag}", f"registration_metric_{tag}"


class QcThresholds:
    """Config key ``preprocess.qc`` (defaults: the config schema); see the module docstring
    for what each flag means. Besides these fields, one ``min_similarity_<tag>`` per
    modality of :data:`mmssl.modalities.MODALITIES` (``min_similarity_t1w``, ...,
    ``min_similarity_epi``), added from the table below."""

    min_mask_ml: float
    max_mask_ml: float
    min_falff_mean: float
    max_falff_mean: float
    max_mean_fd: float


# the similarity threshold of each modality comes from the table, so a new modality needs no
# field here (only its schema key min_similarity_<tag>, which tests/test_modalities.py asks for)
QcThresholds.__annotations__.update({f"min_similarity_{entry.tag}": "float" for entry in MODALITIES.values()})
QcThresholds = schema_settings("qc", "preprocess.qc")(QcThresholds)  # type: ignore[misc]


def qc_flags(metrics: dict, thresholds: QcThresholds | None = None) -> list[str]:
    """Reasons to look at one sample, from its metrics (keys of :data:`QC_COLUMNS`, and
    of :func:`structural_metric_keys` for every structural modality); a missing or NaN
    metric raises no flag, except fALFF's when the sample has fALFF (``has_fALFF`` absent
    or not 0), where its absence is a problem. ``thresholds`` None: the schema's
    ``preprocess.qc`` defaults."""
    thresholds = thresholds or QcThresholds.from_config({})
    flags = []
    for entry in MODALITIES.values():
        if not entry.structural:
            continue
        volume_key, similarity_key, _ = structural_metric_keys(entry.suffix)
        volume = metrics.get(volume_key, np.nan)
        if volume < thresholds.min_mask_ml:
            flags.append(f"small_mask_{entry.tag}")
        if volume > thresholds.max_mask_ml:
            flags.append(f"large_mask_{entry.tag}")
        if metrics.get(similarity_key, np.nan) < getattr(thresholds, f"min_similarity_{entry.tag}"):
            flags.append(f"low_similarity_{entry.tag}")
    for suffix in functional_modalities():
        tag = MODALITIES[suffix].tag
        if metrics.get(f"similarity_{tag}", np.nan) < getattr(thresholds, f"min_similarity_{tag}"):
            flags.append(f"low_similarity_{tag}")
    falff = metrics.get("falff_mean_in_brain", np.nan)
    has_falff = metrics.get("has_fALFF", 1)
    if has_falff and not (np.isfinite(falff) and thresholds.min_falff_mean <= falff <= thresholds.max_falff_mean):
        flags.append("falff_out_of_range")
    if metrics.get("mean_fd", np.nan) > thresholds.max_mean_fd:
        flags.append("high_motion")
    return flags


def qc_table(rows: Sequence[dict], thresholds: QcThresholds | None = None) -> pd.DataFrame:
    """One row per subject/sample with its metrics and ``flags``; flagged rows first
    (most flags first), then by subject and sample. ``thresholds`` None: the schema's defaults."""
    thresholds = thresholds or QcThresholds.from_config({})
    table = pd.DataFrame(list(rows))
    for col in QC_COLUMNS:
        if col not in table.columns:
            table[col] = "" if col in ("sample", "montage", "flags") else np.nan
    table["flags"] = [",".join(qc_flags(r, thresholds)) for r in table.to_dict("records")]
    n_flags = table["flags"].map(lambda f: len(f.split(",")) if f else 0)
    table = table.assign(_n=-n_flags).sort_values(["_n", "subject", "sample"], kind="stable").drop(columns="_n")
    return table[list(QC_COLUMNS) + [c for c in table.columns if c not in QC_COLUMNS]].reset_index(drop=True)


def _centre_slices(mask: np.ndarray) -> tuple[int, int, int]:
    """Voxel indices of the mask's centre of mass (grid centre for an empty mask)."""
    if not mask.any():
        return tuple(s // 2 for s in mask.shape)  # type: ignore[return-value]
    return tuple(int(round(c)) for c in np.argwhere(mask).mean(0))  # type: ignore[return-value]


def _views(volume: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    """Axial, coronal, sagittal slices of an (X, Y, Z) RAS volume, transposed for imshow
    with origin='lower': anterior/superior up, and the subject's right on the right of
    axial and coronal views (neurological convention)."""
    i, j, k = centre
    return [volume[:, :, k].T, volume[:, j, :].T, volume[i, :, :].T]


def write_montage(rows: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path, title: str = "") -> Path:
    """PNG: one row of three views (axial, coronal, sagittal, through the first row's
    mask centre) per source, in the order given. rows: (source name, (X, Y, Z) volume in
    MNI, (X, Y, Z) mask); a structural source (T1w, T2w, FLAIR) in grey with its mask
    outlined in red, a BOLD map (fALFF, ALFF) in colour over its 1st-99th percentiles in
    the mask, with a colour bar. Atomic write."""
    if not rows:
        raise ValueError(f"{path}: a montage needs at least one source")
    centre = _centre_slices(np.asarray(rows[0][2], bool))
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows) + 0.4), squeeze=False)
    for line, (name, volume, mask) in zip(axes, rows):
        mask = np.asarray(mask, bool)
        if is_structural_source(name):
            limit = np.percentile(volume[mask], 99) if mask.any() else None
            for ax, image, outline in zip(line, _views(volume, centre), _views(mask.astype(float), centre)):
                ax.imshow(image, cmap="gray", origin="lower", vmin=0, vmax=limit)
                if outline.any():
                    ax.contour(outline, levels=[0.5], colors="red", linewidths=0.7)
        else:
            # 1st-99th percentile in the brain: fALFF varies little, a 0-based scale hides it
            values = volume[mask & (volume != 0)]
            low, high = np.percentile(values, [1, 99]) if values.size else (None, None)
            for ax, image in zip(line, _views(volume, centre)):
                shown = ax.imshow(image, cmap="hot", origin="lower", vmin=low, vmax=high)
            fig.colorbar(shown, ax=line.tolist(), fraction=0.02, label=name)
        line[0].set_title(name, fontsize=8, loc="left")
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return Path(path)


def metric_columns() -> tuple[str, ...]:
    """The metrics the QC page shows, in column order: every modality's ``qc_fields``,
    in table order."""
    return tuple(c for entry in MODALITIES.values() for c in entry.qc_fields)


def subject_montages(table: pd.DataFrame) -> pd.DataFrame:
    """One row per subject, in ``table``'s order (flagged first): the subject's first row,
    i.e. its most-flagged sample, which its montage shows."""
    return table.drop_duplicates("subject", keep="first")


def excluded_flags(table: pd.DataFrame, excluded: pd.DataFrame | None) -> pd.DataFrame:
    """``table`` with ``excluded_<suffix>`` added to the flags of every row of a subject one
    of whose scans (a T1w, a BOLD run, ...) was excluded, so the subject never reads "ok";
    flagged rows first again."""
    if excluded is None or excluded.empty:
        return table
    from mmssl.bids.layout import parse_bids_name

    lost: dict[str, set[str]] = {}
    for row in excluded.itertuples(index=False):
        name = parse_bids_name(Path(str(row.path)).name) if str(row.path) else None
        if name is not None and str(row.subject):
            lost.setdefault(str(row.subject), set()).add(f"excluded_{name.suffix.lower()}")
    extra = table["subject"].astype(str).map(lambda s: ",".join(sorted(lost.get(s, ()))))
    table = table.assign(flags=[",".join(f for f in (a, b) if f) for a, b in zip(table["flags"], extra)])
    n_flags = table["flags"].map(lambda f: len(f.split(",")) if f else 0)
    return table.assign(_n=-n_flags).sort_values(["_n", "subject", "sample"], kind="stable").drop(columns="_n")


def write_html(table: pd.DataFrame, path: str | Path, title: str = "MRI preprocessing QC",
               excluded: pd.DataFrame | None = None) -> Path:
    """One self-contained HTML page (inline CSS, no scripts, montages embedded as data URIs,
    so it shows whole inside Snakemake's report too): first every exclusion with its reason
    (``excluded``: excluded.tsv), then one section per subject, in the order of ``table``
    (flagged first, as :func:`qc_table` sorts), with a row of metrics per sample and the
    subject's montage."""
    path = Path(path)
    n_flagged = int(table.groupby("subject", sort=False)["flags"].apply(lambda f: (f != "").any()).sum())
    metrics = [c for c in metric_columns() if c in table.columns and table[c].notna().any()]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1em}div.s{margin:0 0 1.5em}"
        "h2{font-size:1em;margin:.2em 0}.flag{color:#b00;font-weight:bold}table.m td,table.m th{padding:0 .8em 0 0;text-align:left}</style>",
        f"</head><body><h1>{html.escape(title)}</h1>",
        f"<p>{table['subject'].nunique()} subjects ({len(table)} samples), {n_flagged} subjects flagged (listed first).</p>",
    ]
    if excluded is not None:
        columns = [c for c in ("subject", "session", "path", "reason") if c in excluded.columns]
        rows_html = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in columns) + "</tr>"
                            for r in excluded.to_dict("records"))
        parts.append(f"<h2 id='excluded'>Excluded ({len(excluded)})</h2><table class='m excluded'>"
                     f"<tr>{''.join(f'<th>{c}</th>' for c in columns)}</tr>{rows_html}</table>")
    for subject, rows in table.groupby("subject", sort=False):
        flags = sorted({f for joined in rows["flags"] for f in joined.split(",") if f})
        status = f"<span class='flag'>{html.escape(','.join(flags))}</span>" if flags else "ok"
        head = "".join(f"<th>{html.escape(c)}</th>" for c in ("sample", "sources", *metrics, "flags"))
        body = "".join(
            "<tr>" + f"<td>{html.escape(str(r.get('sample', '')))}</td><td>{html.escape(str(r.get('sources', '')))}</td>"
            + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in metrics)
            + f"<td>{html.escape(r['flags']) or 'ok'}</td></tr>"
            for r in rows.to_dict("records")
        )
        parts.append(f"<div class='s'><h2>{html.escape(str(subject))} — {status}</h2>"
                     f"<table class='m'><tr>{head}</tr>{body}</table>{_img(rows.iloc[0], path)}</div>")
    parts.append("</body></html>")
    write_text("\n".join(parts), path)
    return path


def _img(row: pd.Series, page: Path) -> str:
    """The montage as a data URI: a relative link breaks once the page is copied into
    Snakemake's report (about 30 kB per subject)."""
    if not row.get("montage"):
        return ""
    data = base64.b64encode(Path(row["montage"]).read_bytes()).decode("ascii")
    alt = f"{row['subject']} / {row.get('sample', '')}"
    return f"<img src='data:image/png;base64,{data}' alt='{html.escape(alt)}'>"


def _fmt(value: object) -> str:
    try:
        return f"{float(value):.3f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return html.escape(str(value))
