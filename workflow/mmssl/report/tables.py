"""Aggregation of per-(method, fold) results into the dataset's summary.tsv (long
format), table.md (mean ± sd per method, a distinguishable best per column in bold, and
the paired per-fold differences against ``random`` and ``S``) and figure.png (bars per
method with the spread over folds, like the paper's Figs. 4-6).

Inputs are the probe and similarity TSVs, ``results/{dataset}/{probe|similarity}/{method}/fold{k}.tsv``:
one row per (source or source pair, split) with numeric metric columns, ``n`` (rows
evaluated), optionally ``ci_low`` / ``ci_high`` (the probe's 95% bootstrap interval of
its accuracy or ROC AUC), ``epoch`` (the model's chosen epoch), ``note`` (why a value is
n/a) and a ``status`` ('ok', or 'diverged' with NaN metrics for a run whose training did
not recover).

Samples lacking a source: each source is probed on the samples having it, and each pair
compared on the samples having both, so n may differ between the columns of one fold.
summary.tsv keeps its ``n`` per (method, fold, source or pair, split, metric) row. In
table.md, when n differs between the sources of some fold, every column title carries its
n (``fmri accuracy (n = 80–82)``: the range over folds and methods; the same for every
method, as the rows depend on the store and the split only) and the header says so; else
the header's single "Test sets: n = …" stands, as before. A fold whose value is n/a (a
source with too few samples for its probe, SVCCA on too few samples, …) is left out of
the cell's mean, which then says ``(k n/a)``; the notes under the table give the reasons.

Bold rule (:func:`best_of`), per column: the candidate is the method other than the floor
``random`` with the highest mean. It is bold only if its interval lies strictly above
the interval of every other method with a value, the floor included (low end > their
high ends), where a method's interval is mean ± sd over folds when >= 2 folds finished,
else the 95% bootstrap interval of its one fold. Otherwise (a tie, an overlap, the floor
on top, or a value with no interval, e.g. a one-fold similarity) nothing is bold and the
column title says ``(no clear best)``; a column with fewer than two methods with a value
has neither.

Paired differences (:func:`paired_differences`): for every method and each baseline
(``random``, ``S``) in the table, the per-fold differences d method - baseline of each
probe metric over the folds where both finished (at least 2): their mean, sd (ddof 1),
the number of folds k, and, from 3 folds on, the corrected resampled t of Nadeau & Bengio
(2003, "Inference for the generalization error", Machine Learning 52):
t = mean(d) / sqrt((1/k + n_test/n_train) * var(d)), k - 1 degrees of freedom, its
two-sided p (Student's t) and the 95% interval mean ± t_0.975,k-1 * sqrt((1/k +
n_test/n_train) * var(d)). The naive paired t, mean / (sd / sqrt(k)), treats the folds as
independent; they are not, as their training sets overlap, and the n_test/n_train term
widens the variance for that. n_test/n_train is 1/(K - 1) for K-fold cross-validation:
the result tables carry the test set's n but not the training set's, so the ratio comes
from the number of folds K, which is ``n_folds`` when given, else the highest fold index
in the results + 1 (a lower bound of the design's K when its last folds were not run,
which only enlarges the correction); ``test_train_ratio`` overrides it with the actual
ratio (e.g. a fixed test pool: 1,000 test / 3,200 train digits). With 2 folds (1 degree
of freedom) no t, p or interval is given: they read n/a (k < 3 folds).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from mmssl.io import atomic_path, write_text

SUMMARY_COLUMNS = ["dataset", "method", "fold", "source", "split", "metric", "value", "status", "n", "ci_low",
                   "ci_high", "epoch", "note"]
# metrics shown in the table and the figure, in this order, when present
HEADLINE = ("accuracy", "roc_auc", "cka", "svcca")
# the probe's headline metrics: what ci_low / ci_high describe, and what is compared per fold
PROBE_METRICS = ("accuracy", "roc_auc")
ID_COLUMNS = {"source", "split", "status", "source_a", "source_b", "hyperparameter", "n", "ci_low", "ci_high", "epoch",
              "note", "svcca_kept_a", "svcca_kept_b"}
FLOOR = "random"
BASELINES = ("random", "S")
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
    for column in ("n", "ci_low", "ci_high", "epoch", "note"):
        if column not in df.columns:
            df = df.assign(**{column: np.nan})
    df = df.assign(note=[n if isinstance(n, str) else "" for n in df["note"]])
    metrics = [c for c in df.columns if c not in ID_COLUMNS and pd.api.types.is_numeric_dtype(df[c])]
    long = df.melt(id_vars=["source", "split", "status", "n", "ci_low", "ci_high", "epoch", "note"],
                   value_vars=metrics, var_name="metric")
    # the interval belongs to the probe's headline metric, a note to the metric it names
    ci_metric = next((m for m in PROBE_METRICS if m in metrics), None)
    off = long["metric"] != ci_metric
    long.loc[off, ["ci_low", "ci_high"]] = np.nan
    long.loc[long["note"].str.split(" ").str[0] != long["metric"], "note"] = ""
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


def _columns(rows: pd.DataFrame) -> list[str]:
    """Headline columns in HEADLINE order, then by source."""
    order = {m: i for i, m in enumerate(HEADLINE)}
    return list(dict.fromkeys(rows.sort_values(["metric", "source"], key=lambda s: s.map(order) if s.name == "metric"
                                               else s)["column"]))


def span(values: pd.Series | list[float]) -> str:
    """"12" or "12–15": the range of integer counts."""
    low, high = int(min(values)), int(max(values))
    return f"{low}" if low == high else f"{low}–{high}"


def column_sizes(rows: pd.DataFrame) -> dict[str, str]:
    """column -> "n = 80–82" for every headline column, when n differs between the sources
    (or pairs) of some (method, fold, split) among the probe columns or among the
    similarity columns; {} when it never does (every sample has every source), so the table
    then reads as it always did. The range is over the folds and methods with a value (over
    all, when no fold has one). rows: :func:`headline`'s."""
    have = rows[(rows["status"] == "ok") & rows["n"].notna()]
    kind = np.where(have["metric"].isin(PROBE_METRICS), "probe", "similarity")
    per_group = have.assign(kind=kind).groupby(["kind", "method", "fold", "split"])["n"].nunique()
    if not (per_group > 1).any():
        return {}
    sizes = {}
    for column, g in have.groupby("column"):
        valued = g[g["value"].notna()]
        sizes[column] = f"n = {span((valued if len(valued) else g)['n'])}"
    return sizes


def _cell(g: pd.DataFrame) -> tuple[str, float, tuple[float, float] | None]:
    """One table cell from a (method, column)'s rows over folds: (text, mean of the
    finished folds, interval or None). Text: "mean ± sd" (sd over folds, ddof 1) for
    >= 2 finished folds; "value [ci_low, ci_high]" for one fold with a bootstrap interval,
    else the value alone; " (k n/a, j diverged)" appended when k 'ok' folds have no value
    (a note says why) and j folds are not 'ok', and other folds have a value (each part
    only when not 0); "diverged" when no 'ok' fold has a value and some fold diverged;
    else "n/a". The interval (for the bold rule) is mean ± sd, or the one fold's
    bootstrap interval."""
    ok = g[(g["status"] == "ok") & g["value"].notna()]
    n_bad = int((g["status"] != "ok").sum())
    n_na = int(((g["status"] == "ok") & g["value"].isna()).sum())
    if ok.empty:
        return ("diverged" if n_bad else "n/a"), np.nan, None
    mean = float(ok["value"].mean())
    if len(ok) > 1:
        sd = float(ok["value"].std(ddof=1))
        text, interval = f"{mean:.3f} ± {sd:.3f}", (mean - sd, mean + sd)
    else:
        low, high = float(ok["ci_low"].iloc[0]), float(ok["ci_high"].iloc[0])
        if np.isfinite(low) and np.isfinite(high):
            text, interval = f"{mean:.3f} [{low:.3f}, {high:.3f}]", (low, high)
        else:
            text, interval = f"{mean:.3f}", None
    missing = ([f"{n_na} n/a"] if n_na else []) + ([f"{n_bad} diverged"] if n_bad else [])
    if missing:
        text += f" ({', '.join(missing)})"
    return text, mean, interval


def best_of(means: dict[str, float], intervals: dict[str, tuple[float, float] | None],
            floor: str = FLOOR) -> tuple[str | None, bool]:
    """(method to bold or None, whether the column has no clear best) under the rule of
    the module docstring. ``means`` / ``intervals``: the methods with a finite mean, the
    floor included (it is compared against, never chosen)."""
    if len(means) < 2:
        return None, False
    candidates = [m for m in means if m != floor]
    if not candidates:
        return None, True
    best = max(candidates, key=lambda m: means[m])  # first listed on an exact tie; a tie never passes below
    others = [m for m in means if m != best]
    if intervals[best] is None or any(intervals[m] is None for m in others):
        return None, True
    if intervals[best][0] > max(intervals[m][1] for m in others):
        return best, False
    return None, True


def table_methods(methods: list[str]) -> list[str]:
    """The table's row order: the floor first (when it is one of the methods), then the rest as given."""
    return ([FLOOR] if FLOOR in methods else []) + [m for m in methods if m != FLOOR]


def _label(method: str) -> str:
    return f"{method} (floor)" if method == FLOOR else method


def markdown_table(summary: pd.DataFrame, methods: list[str]) -> str:
    """Methods × headline columns; mean ± sd over folds (one fold: its 95% bootstrap
    interval); a distinguishable best per column in bold (see the module docstring).

    Rows: ``random (floor)`` first when ``random`` is a method, then ``methods`` in order;
    "folds" is the number of folds a method has results for, diverged ones included.
    Column titles: ``<source> <metric>``, then in parentheses its n when n differs between
    sources (:func:`column_sizes`) and "no clear best" when the bold rule finds none.
    """
    rows = headline(summary)
    columns = _columns(rows)
    order = table_methods(methods)
    cells: dict[str, dict[str, str]] = {m: {} for m in order}
    means: dict[str, dict[str, float]] = {c: {} for c in columns}
    intervals: dict[str, dict[str, tuple[float, float] | None]] = {c: {} for c in columns}
    groups = dict(iter(rows.groupby(["method", "column"])))
    for method in order:  # in table order, so an exact tie names the method listed first
        for column in columns:
            if (method, column) in groups:
                cells[method][column], mean, interval = _cell(groups[(method, column)])
                if np.isfinite(mean):
                    means[column][method], intervals[column][method] = mean, interval
    best, unclear = {}, {}
    for c in columns:
        best[c], unclear[c] = best_of(means[c], intervals[c])
    n_folds = rows.groupby("method")["fold"].nunique().reindex(order).fillna(0).astype(int)
    sizes = column_sizes(rows)
    titles = []
    for c in columns:
        extra = ([sizes[c]] if c in sizes else []) + (["no clear best"] if unclear[c] else [])
        titles.append(f"{c} ({'; '.join(extra)})" if extra else c)
    lines = ["| method | folds | " + " | ".join(titles) + " |", "|---|---|" + "---|" * len(columns)]
    for m in order:
        vals = [(f"**{cells[m][c]}**" if best[c] == m else cells[m].get(c, "")) for c in columns]
        lines.append(f"| {_label(m)} | {n_folds[m]} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


PAIRED_COLUMNS = ["method", "base", "source", "split", "metric", "mean", "sd", "k", "t", "p", "ci_low", "ci_high",
                  "folds", "ratio", "ratio_from"]
# the fewest paired folds a t, p and interval are given from: 2 folds leave 1 degree of freedom
MIN_FOLDS_T = 3
NO_T = f"n/a (k < {MIN_FOLDS_T} folds)"


def corrected_resampled_t(d: np.ndarray | pd.Series | list[float], test_train_ratio: float,
                          level: float = 0.95) -> tuple[float, float, float, float, float, float]:
    """The corrected resampled t-test of Nadeau & Bengio (2003) on k per-fold differences
    d (k >= 2): (mean, sd, t, p, ci_low, ci_high), sd with ddof 1, t = mean / sqrt((1/k +
    test_train_ratio) * sd²) with k - 1 degrees of freedom, p two-sided, the interval
    mean ± t_(1+level)/2,k-1 * that standard error. t is ±inf when every difference is the
    same non-zero value (p 0, the interval that value), NaN when all are 0 (p NaN). t, p
    and the interval are NaN below MIN_FOLDS_T folds. test_train_ratio: n_test / n_train
    of one fold (1/(K - 1) for K-fold cross-validation)."""
    d = np.asarray(d, dtype=float)
    k = len(d)
    if k < 2:
        raise ValueError(f"paired differences need at least 2 folds; got {k}")
    if not test_train_ratio > 0:
        raise ValueError(f"test_train_ratio must be > 0; got {test_train_ratio}")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if k < MIN_FOLDS_T:
        return mean, sd, np.nan, np.nan, np.nan, np.nan
    se = float(np.sqrt((1.0 / k + test_train_ratio) * sd ** 2))
    df = k - 1
    if se > 0:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), df))
    elif mean != 0:
        t, p = float(np.sign(mean)) * np.inf, 0.0
    else:
        t, p = np.nan, np.nan
    half = float(stats.t.ppf((1 + level) / 2, df)) * se
    return mean, sd, t, p, mean - half, mean + half


def design_folds(summary: pd.DataFrame) -> int:
    """K, the number of folds of the cross-validation, as the results show it: the highest
    fold index + 1 (folds are numbered 0..K-1; diverged folds count)."""
    folds = summary["fold"].dropna()
    return int(folds.max()) + 1 if len(folds) else 0


def correction_ratio(summary: pd.DataFrame, n_folds: int | None = None,
                        test_train_ratio: float | None = None) -> tuple[float, str]:
    """(n_test / n_train for the correction, where it comes from): ``test_train_ratio``
    when given ("given"), else 1/(K - 1) with K = ``n_folds`` or :func:`design_folds`, at
    least 2 ("1/(K − 1), K = 5 folds")."""
    if test_train_ratio is not None:
        if not test_train_ratio > 0:
            raise ValueError(f"test_train_ratio must be > 0; got {test_train_ratio}")
        return float(test_train_ratio), "given"
    k = max(int(n_folds if n_folds is not None else design_folds(summary)), 2)
    return 1.0 / (k - 1), f"1/(K − 1), K = {k} folds"


def paired_differences(summary: pd.DataFrame, methods: list[str], n_folds: int | None = None,
                       test_train_ratio: float | None = None) -> pd.DataFrame:
    """The paired per-fold differences method - baseline of each probe metric (accuracy,
    roc_auc on test / hold-out), for every method and each baseline in ``methods`` (see
    the module docstring), where >= 2 folds pair up. Columns PAIRED_COLUMNS: mean and sd
    (ddof 1) of the differences, k folds, the corrected resampled t (Nadeau-Bengio), its
    two-sided p and 95% interval of the mean difference (:func:`corrected_resampled_t`;
    NaN below 3 folds), the folds used ("0,1,2") and the n_test/n_train ratio of the
    correction and where it comes from (:func:`correction_ratio`)."""
    ratio, ratio_from = correction_ratio(summary, n_folds, test_train_ratio)
    rows = summary[summary["metric"].isin(PROBE_METRICS) & summary["split"].isin(["test", "holdout"])
                   & (summary["status"] == "ok") & summary["value"].notna()]
    out = []
    for base in (b for b in BASELINES if b in methods):
        ref = rows[rows["method"] == base].set_index(["source", "split", "metric", "fold"])["value"]
        for method in (m for m in table_methods(methods) if m != base):
            mine = rows[rows["method"] == method].set_index(["source", "split", "metric", "fold"])["value"]
            diff = (mine - ref.reindex(mine.index)).dropna()
            for (source, split, metric), d in diff.groupby(level=["source", "split", "metric"], sort=False):
                k = len(d)
                if k < 2:
                    continue
                mean, sd, t, p, low, high = corrected_resampled_t(d.to_numpy(), ratio)
                folds = ",".join(str(f) for f in sorted(d.index.get_level_values("fold")))
                out.append([method, base, source, split, metric, mean, sd, k, t, p, low, high, folds, ratio,
                            ratio_from])
    return pd.DataFrame(out, columns=PAIRED_COLUMNS)


def comparison_rows(paired: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """summary.tsv rows of :func:`paired_differences`: metric ``<metric>_minus_<baseline>``,
    value the mean difference, ci_low / ci_high its 95% interval (corrected resampled t;
    empty below 3 folds), fold, n and epoch empty, note "corrected resampled t
    (Nadeau-Bengio, n_test/n_train=0.25) over folds 0,1,2: sd=… t=… df=… p=…", or below 3
    folds "folds 0,1: sd=…; t, p, interval n/a (k < 3 folds)"."""
    notes = []
    for r in paired.itertuples():
        if r.k < MIN_FOLDS_T:
            notes.append(f"folds {r.folds}: sd={r.sd:.6g}; t, p, interval {NO_T}")
        else:
            notes.append(f"corrected resampled t (Nadeau-Bengio, n_test/n_train={r.ratio:.4g}) over folds {r.folds}: "
                         f"sd={r.sd:.6g} t={r.t:.6g} df={r.k - 1} p={r.p:.4g}")
    return pd.DataFrame({
        "dataset": dataset, "method": paired["method"], "fold": np.nan, "source": paired["source"],
        "split": paired["split"], "metric": paired["metric"] + "_minus_" + paired["base"], "value": paired["mean"],
        "status": "ok", "n": np.nan, "ci_low": paired["ci_low"], "ci_high": paired["ci_high"], "epoch": np.nan,
        "note": notes,
    }, columns=SUMMARY_COLUMNS)


def _t_text(t: float) -> str:
    return "n/a" if np.isnan(t) else ("+inf" if t > 0 else "-inf") if np.isinf(t) else f"{t:.2f}"


def _p_text(p: float) -> str:
    return "p = n/a" if np.isnan(p) else "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _paired_cell(r: pd.Series) -> str:
    """"+0.350 ± 0.050 (t = 5.12, p = 0.036, 3 folds)"; below 3 folds
    "+0.255 ± 0.007 (2 folds; t, p: n/a (k < 3 folds))"."""
    head = f"{r['mean']:+.3f} ± {r['sd']:.3f}"
    if r["k"] < MIN_FOLDS_T:
        return f"{head} ({r['k']} folds; t, p: {NO_T})"
    return f"{head} (t = {_t_text(r['t'])}, {_p_text(r['p'])}, {r['k']} folds)"


def paired_table(paired: pd.DataFrame, methods: list[str]) -> str:
    """Markdown section: one row per (method, baseline) with a comparison, one column per
    probe column; cell "mean difference ± sd (t = corrected resampled t, p = two-sided p,
    k folds)", or below 3 folds "mean difference ± sd (k folds; t, p: n/a (k < 3
    folds))"; then a note on the test. Empty when no baseline is among ``methods``."""
    bases = [b for b in BASELINES if b in methods]
    if not bases:
        return ""
    title = "## Paired differences vs " + " and vs ".join(bases) + " (per-fold)\n\n"
    if paired.empty:
        return title + f"None: they need at least 2 folds in which both the method and {' / '.join(bases)} finished.\n"
    c = paired.assign(column=paired["source"] + " " + paired["metric"]
                      + np.where(paired["split"] == "holdout", " (hold-out)", ""))
    columns = _columns(c)
    lines = ["| method | vs | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for base in bases:
        for m in table_methods(methods):
            mine = c[(c["method"] == m) & (c["base"] == base)].set_index("column")
            if mine.empty:
                continue
            vals = [_paired_cell(mine.loc[col]) if col in mine.index else "" for col in columns]
            lines.append(f"| {_label(m)} | {base} | " + " | ".join(vals) + " |")
    ratio, ratio_from = float(paired["ratio"].iloc[0]), str(paired["ratio_from"].iloc[0])
    note = ("\nMean difference ± sd over the k folds where both finished. t: the corrected resampled t of Nadeau & "
            "Bengio (2003), mean / sqrt((1/k + n_test/n_train) · sd²), df k − 1, with its two-sided p; the 95% "
            "interval is in summary.tsv. The correction accounts for the folds' overlapping training sets, which "
            f"the naive paired t ignores. n_test/n_train = {ratio:.4g}"
            + (" (given)" if ratio_from == "given" else
               f": {ratio_from} (from the number of folds: the result tables carry no training-set size)")
            + f". With fewer than {MIN_FOLDS_T} folds (1 degree of freedom) no t or p is given: n/a.\n")
    return title + "\n".join(lines) + "\n" + note


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


SVCCA_NOTE = re.compile(r"svcca n/a: (\d+) samples < \d+ x (\d+) kept dims")


def _notes(summary: pd.DataFrame) -> str:
    """Footnote lines for values shown n/a with a reason: SVCCA on too few samples (one
    line), and each other reason (a source too few samples have for its probe, a pair too
    few have both of) with its column and folds."""
    noted = summary[(summary["status"] == "ok") & (summary["note"] != "") & summary["note"].notna()
                    & summary["fold"].notna()]
    found = [m for m in (SVCCA_NOTE.match(n) for n in noted["note"]) if m]
    text = ""
    if found:
        samples, dims = span([int(m.group(1)) for m in found]), span([int(m.group(2)) for m in found])
        text += ("\nSVCCA n/a: reported only with at least 5 evaluation samples per dimension SVCCA keeps "
                 f"(here: {samples} samples, {dims} kept dims); see `note` in summary.tsv. CKA is unaffected.\n")
    others = headline(noted[~noted["note"].str.match(SVCCA_NOTE.pattern)])
    if not others.empty:  # the same reason for every method: the rows depend on the store and the split
        lines = [f"- `{column}`, fold{'s' if g['fold'].nunique() > 1 else ''} "
                 f"{', '.join(str(int(f)) for f in sorted(g['fold'].unique()))}: {note.split('n/a: ', 1)[-1]}"
                 for (column, note), g in others.groupby(["column", "note"], sort=False)]
        text += "\nNot computed (n/a) for lack of samples; see `note` in summary.tsv:\n\n" + "\n".join(lines) + "\n"
    return text


def write_report(dataset: str, files: list[Path], methods: list[str], summary_path: Path, table_path: Path,
                 figure_path: Path, n_folds: int | None = None, test_train_ratio: float | None = None) -> pd.DataFrame:
    """summary.tsv, table.md and figure.png of one dataset from its probe / similarity TSVs.
    n_folds / test_train_ratio: for the paired differences' correction
    (:func:`correction_ratio`; default 1/(K - 1), K from the results' fold indices)."""
    summary = collect(dataset, files)
    paired = paired_differences(summary, methods, n_folds, test_train_ratio)
    full = pd.concat([summary, comparison_rows(paired, dataset)], ignore_index=True) if len(paired) else summary
    with atomic_path(summary_path) as tmp:  # 6 significant digits, as the tables show 3
        full.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    n_folds = summary.groupby("method")["fold"].nunique()
    test_n = summary.loc[summary["metric"].isin(PROBE_METRICS) & (summary["split"] == "test"), "n"].dropna()
    sizes = "" if test_n.empty else f" Test sets: n = {span(test_n)} per fold."
    if column_sizes(headline(summary)):
        sizes += (" Each source is probed on the samples having it and each pair compared on those having both, "
                  "so n differs between columns: each column's title gives its n (range over folds).")
    header = (f"# {dataset}: linear evaluation and similarity\n\n"
              f"Mean ± sd over folds ({int(n_folds.max()) if len(n_folds) else 0} at most); with one fold, the value "
              "and its 95% bootstrap interval [low, high] over the test samples (probe metrics)."
              f"{sizes} Columns: `<source> <metric>` on the test split; `a~b` are similarities between sources. "
              f"`{FLOOR} (floor)` is the untrained encoder, the floor, never bold. Bold: the best mean, only when its "
              "interval (mean ± sd over ≥ 2 folds, else the bootstrap interval) lies above every other method's; "
              "otherwise the column says `(no clear best)`.\n\n")
    paired_md = paired_table(paired, methods)
    write_text(header + markdown_table(summary, methods) + _notes(summary) + ("\n" + paired_md if paired_md else ""),
               table_path)
    figure(summary, methods, figure_path, dataset)
    return full
