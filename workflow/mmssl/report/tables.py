"""Aggregation of per-(method, fold) results into the dataset's summary.tsv (long
format), table.md (mean ± sd per method, best per column in bold) and figure.png (bars
per method with the spread over folds, like the paper's Figs. 4-6).

Inputs are the probe and similarity TSVs, ``results/{dataset}/{probe|similarity}/{method}/fold{k}.tsv``:
one row per (source or source pair, split) with numeric metric columns and a ``status``
('ok', or 'diverged' with NaN metrics for a run whose training did not recover).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from mmssl.io import atomic_path, write_text

SUMMARY_COLUMNS = ["dataset", "method", "fold", "source", "split", "metric", "value", "status"]
# metrics shown in the table and the figure, in this order, when present
HEADLINE = ("accuracy", "roc_auc", "cka", "svcca")
ID_COLUMNS = {"source", "split", "status", "source_a", "source_b", "hyperparameter", "n"}
FOLD_RE = re.compile(r"fold(\d+)$")


def run_of(path: Path) -> tuple[str, int]:
    """results/{dataset}/{probe|similarity}/{method}/fold{k}.tsv -> (method, k)."""
    m = FOLD_RE.match(path.stem)
    if not m:
        raise ValueError(f"{path}: expected a file named fold<k>.tsv inside a folder named after the method")
    return path.parent.name, int(m.group(1))


def _melt(df: pd.DataFrame, dataset: str, method: str, fold: int) -> pd.DataFrame:
    if "source_a" in df.columns:
        df = df.assign(source=df["source_a"].astype(str) + "~" + df["source_b"].astype(str))
    if "status" not in df.columns:
        df = df.assign(status="ok")
    metrics = [c for c in df.columns if c not in ID_COLUMNS and pd.api.types.is_numeric_dtype(df[c])]
    long = df.melt(id_vars=["source", "split", "status"], value_vars=metrics, var_name="metric")
    return long.assign(dataset=dataset, method=method, fold=fold)[SUMMARY_COLUMNS]


def collect(dataset: str, files: list[Path]) -> pd.DataFrame:
    """Long table of every metric of every probe/similarity file."""
    parts = []
    for f in files:
        method, fold = run_of(Path(f))
        df = pd.read_csv(f, sep="\t")
        if df.empty:
            raise ValueError(f"{f}: no rows")
        parts.append(_melt(df, dataset, method, fold))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SUMMARY_COLUMNS)


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows the table and figure show: headline metrics on the test split (and the
    hold-out split when there is one)."""
    keep = summary["metric"].isin(HEADLINE) & summary["split"].isin(["test", "holdout"])
    out = summary[keep].copy()
    out["column"] = out["source"] + " " + out["metric"] + np.where(out["split"] == "holdout", " (hold-out)", "")
    return out


def _cell(values: pd.Series, statuses: pd.Series) -> tuple[str, float]:
    """One table cell from a (method, column)'s values over folds and their statuses:
    (text, mean of the finished folds). "mean ± sd" (sd over folds, ddof 1) or just the
    mean for one fold; " (k diverged)" appended when k folds are not 'ok' and others
    are; "diverged" when no 'ok' fold has a value and some fold diverged; else "n/a"."""
    ok = values[statuses == "ok"].dropna()
    n_bad = int((statuses != "ok").sum())
    if ok.empty:
        return ("diverged" if n_bad else "n/a"), np.nan
    text = f"{ok.mean():.3f} ± {ok.std(ddof=1):.3f}" if len(ok) > 1 else f"{ok.mean():.3f}"
    if n_bad:
        text += f" ({n_bad} diverged)"
    return text, ok.mean()


def markdown_table(summary: pd.DataFrame, methods: list[str]) -> str:
    """Methods × headline columns; mean ± sd over folds; best mean per column in bold.

    Rows follow ``methods``; "folds" is the number of folds a method has results for,
    diverged ones included. Bold marks the highest mean of finished folds (a column of
    diverged / n/a cells has none); on an exact tie the method listed first is bold, as
    ``idxmax`` picks it. No significance test is made.
    """
    rows = headline(summary)
    columns = list(dict.fromkeys(rows.sort_values(["metric", "source"], key=lambda s: s.map(
        {m: i for i, m in enumerate(HEADLINE)}) if s.name == "metric" else s)["column"]))
    cells = {m: {} for m in methods}
    means = pd.DataFrame(index=methods, columns=columns, dtype=float)
    for (method, column), g in rows.groupby(["method", "column"]):
        if method in cells:
            cells[method][column], means.loc[method, column] = _cell(g["value"], g["status"])
    best = {c: means[c].idxmax() if means[c].notna().any() else None for c in columns}
    n_folds = rows.groupby("method")["fold"].nunique().reindex(methods).fillna(0).astype(int)
    lines = ["| method | folds | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for m in methods:
        vals = [(f"**{cells[m][c]}**" if best[c] == m else cells[m].get(c, "")) for c in columns]
        lines.append(f"| {m} | {n_folds[m]} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def figure(summary: pd.DataFrame, methods: list[str], path: Path, title: str) -> None:
    """One panel per headline column: a bar per method (mean over folds) with the folds
    as dots, so the spread is visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = headline(summary)
    rows = rows[rows["status"] == "ok"]
    columns = list(dict.fromkeys(rows["column"]))
    if not columns:  # every run diverged: say so rather than draw empty axes
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, f"{title}: no finished run (all diverged)", ha="center", va="center")
        ax.axis("off")
        _save(fig, path)
        return
    fig, axes = plt.subplots(len(columns), 1, figsize=(max(6, 0.45 * len(methods) + 2), 2.6 * max(len(columns), 1)),
                             squeeze=False)
    for ax, column in zip(axes[:, 0], columns):
        g = rows[rows["column"] == column]
        x = np.arange(len(methods))
        means = [g.loc[g["method"] == m, "value"].mean() for m in methods]
        ax.bar(x, means, color="#8da0cb", edgecolor="#4a5a8a")
        for i, m in enumerate(methods):
            v = g.loc[g["method"] == m, "value"].to_numpy()
            ax.scatter(np.full(len(v), i), v, s=10, color="black", zorder=3)
        finite = [v for v in means if np.isfinite(v)]
        if finite:
            lo = min(g["value"].min(), min(finite))
            ax.set_ylim(max(0.0, lo - 0.05), min(1.0, g["value"].max() + 0.03) if g["value"].max() <= 1 else None)
        ax.set_xticks(x, methods, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel(column, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_title(title)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)


def write_report(dataset: str, files: list[Path], methods: list[str], summary_path: Path, table_path: Path,
                 figure_path: Path) -> pd.DataFrame:
    """summary.tsv, table.md and figure.png of one dataset from its probe / similarity TSVs."""
    summary = collect(dataset, files)
    with atomic_path(summary_path) as tmp:  # 6 significant digits, as the tables show 3
        summary.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    n_folds = summary.groupby("method")["fold"].nunique()
    header = (f"# {dataset}: linear evaluation and similarity\n\n"
              f"Mean ± sd over folds ({int(n_folds.max()) if len(n_folds) else 0} at most); best mean per column in bold. "
              "Columns: `<source> <metric>` on the test split; `a~b` are similarities between sources.\n\n")
    write_text(header + markdown_table(summary, methods), table_path)
    figure(summary, methods, figure_path, dataset)
    return summary
