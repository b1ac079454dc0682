"""Factor recovery on frozen latents (``mmssl recovery``): for a dataset whose generating
factors are known (kind ``synthetic_mri``: :mod:`mmssl.data.known_mri` writes them into the
store's index), how much of each factor a linear read-out of each source's latents gives.

Per source, on the rows its probe uses (``use__<source>`` of the latents file, the same
latents the probe reads), a ridge regression of every factor on z is fitted on the train
and val subjects (z standardised with the train+val mean and sd; the ridge's alpha chosen
per factor by leave-one-out CV on those same subjects alone, sklearn's RidgeCV) and scored
on each eval split (test, and holdout when there is one): R² = 1 - SS_res / SS_tot with the
eval split's own mean, so a read-out no better than the mean scores 0 and one that is worse
scores below 0. The splits are by subject (the fold's split table), so no test subject
takes part in the fit. The interval is the 2.5-97.5 % percentile of R² over
``n_boot`` seeded bootstrap resamples of the eval subjects (the fitted read-out fixed).

Rows: source, factor, role (``shared``; ``private_own`` / ``private_other``: the private
factor of this source / of another; ``nuisance``), split, r2, ci_low, ci_high, n (eval
rows), n_fit (train+val rows), alpha, note, epoch, status.

:func:`recovery_table` turns the per-fold tables of a dataset into a Markdown table: mean ±
sd of R² over folds per source × factor (rows) and method (columns, ``random`` first: the
floor a trained encoder should beat on ``shared``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmssl.evaluate.latents import latents_epoch, latents_sources, latents_status, load_latents
from mmssl.io import atomic_path, write_tsv

COLUMNS = ["source", "factor", "role", "split", "r2", "ci_low", "ci_high", "n", "n_fit", "alpha", "note", "epoch",
           "status"]
ALPHAS = np.logspace(-3, 4, 15)
FIT_SPLITS = ("train", "val")
EVAL_SPLITS = ("test", "holdout")
MIN_ROWS = 3  # fewer eval or fit rows than this: R² n/a


def factor_columns(columns) -> list[str]:
    """The generating factors among an index's columns (:func:`mmssl.data.known_mri.factor_columns`)."""
    from mmssl.data.known_mri import factor_columns as known

    return known(columns)


def factor_role(factor: str, source: str) -> str:
    """shared, private_own (the source's own private factor), private_other, or nuisance."""
    if factor == "shared":
        return "shared"
    if factor.startswith("private_"):
        return "private_own" if factor == f"private_{source}" else "private_other"
    return "nuisance"


def r2(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """R² per column of (n, k) ``y`` against ``pred``, with the eval rows' own mean."""
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return 1.0 - ss_res / np.maximum(ss_tot, 1e-12)


def fit_readout(z_fit: np.ndarray, y_fit: np.ndarray) -> tuple[Any, np.ndarray]:
    """(predict function, alpha per factor): standardise z on the fit rows, then RidgeCV
    per factor (alpha by leave-one-out on the fit rows only)."""
    from sklearn.linear_model import RidgeCV

    mean, sd = z_fit.mean(0), z_fit.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    model = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit((z_fit - mean) / sd, y_fit)
    alpha = np.broadcast_to(np.asarray(model.alpha_, dtype=float), (y_fit.shape[1],))
    return (lambda z: model.predict((z - mean) / sd).reshape(len(z), -1)), alpha


def recover(z: np.ndarray, factors: np.ndarray, split: np.ndarray, evals: tuple[str, ...] = ("test",),
            n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """The read-out of (N, k) ``factors`` from (N, D) ``z``: fit on the train/val rows of
    ``split``, score on each eval split. Returns split -> {r2, ci_low, ci_high: (k,);
    n, n_fit; alpha: (k,)}; an eval split with too few rows, or too few fit rows, gives NaN."""
    fit = np.isin(split, FIT_SPLITS)
    k = factors.shape[1]
    nan = np.full(k, np.nan)
    out = {}
    predict, alpha = fit_readout(z[fit], factors[fit]) if fit.sum() >= MIN_ROWS else (None, nan)
    for s in evals:
        rows = split == s
        n = int(rows.sum())
        if predict is None or n < MIN_ROWS:
            out[s] = {"r2": nan, "ci_low": nan, "ci_high": nan, "n": n, "n_fit": int(fit.sum()), "alpha": alpha}
            continue
        y, pred = factors[rows], predict(z[rows])
        rng = np.random.default_rng(seed)
        boots = np.array([r2(y[b], pred[b]) for b in rng.integers(0, n, (n_boot, n))])
        low, high = np.nanpercentile(boots, [2.5, 97.5], axis=0) if n_boot else (nan, nan)
        out[s] = {"r2": r2(y, pred), "ci_low": low, "ci_high": high, "n": n, "n_fit": int(fit.sum()), "alpha": alpha}
    return out


def read_factors(store: Path) -> pd.DataFrame:
    """The store's index (sample, subject and the factor columns), without reading its arrays."""
    index = pd.read_csv(Path(store) / "index.tsv", sep="\t", dtype={"sample": str, "subject": str})
    factors = factor_columns(index.columns)
    if "shared" not in factors:
        raise ValueError(f"{store}/index.tsv has no generating factors (shared, private_<source>, nuisance_<name>): "
                         "factor recovery needs a synthetic_mri store written by this version of mmssl "
                         "(delete the dataset's results/<dataset>/store and rerun)")
    return index[["sample", "subject", *factors]]


def run_recovery(latents: Path, store: Path, out_tsv: Path, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Factor recovery of every source of ``latents`` (rows: the module docstring)."""
    latents, out_tsv = Path(latents), Path(out_tsv)
    table = read_factors(store)
    factors = factor_columns(table.columns)
    epoch = latents_epoch(latents)
    if latents_status(latents) == "diverged":
        rows = [{"source": s, "factor": f, "role": factor_role(f, s), "split": "test", "r2": np.nan, "epoch": epoch,
                 "status": "diverged"} for s in latents_sources(latents) for f in factors]
        df = pd.DataFrame(rows, columns=COLUMNS)
        write_tsv(df, out_tsv)
        return df
    data = load_latents(latents)
    key = "sample" if data["sample"] is not None else "subject"
    ids = data["sample"] if key == "sample" else data["subject"]
    by_id = table.drop_duplicates(key).set_index(key)
    unknown = sorted(set(ids.tolist()) - set(by_id.index))
    if unknown:
        raise ValueError(f"{latents}: {len(unknown)} {key}(s) not in {store}/index.tsv, e.g. {unknown[:3]}")
    y_all = by_id.loc[ids, factors].to_numpy(dtype=float)
    evals = tuple(s for s in EVAL_SPLITS if np.any(data["split"] == s))
    rows = []
    from threadpoolctl import threadpool_limits

    for source in data["sources"]:
        mine = data["use"][source]
        with threadpool_limits(limits=1):
            found = recover(data["z"][source][mine], y_all[mine], data["split"][mine], evals, n_boot, seed)
        for s in evals:
            r = found[s]
            note = "" if np.isfinite(r["r2"]).all() else (f"r2 n/a: {source}: {r['n']} {s} rows, {r['n_fit']} "
                                                           f"train+val rows (need {MIN_ROWS} of each)")
            for j, f in enumerate(factors):
                rows.append({"source": source, "factor": f, "role": factor_role(f, source), "split": s,
                             "r2": r["r2"][j], "ci_low": r["ci_low"][j], "ci_high": r["ci_high"][j], "n": r["n"],
                             "n_fit": r["n_fit"], "alpha": r["alpha"][j], "note": note, "epoch": epoch,
                             "status": "ok"})
    df = pd.DataFrame(rows, columns=COLUMNS)
    write_tsv(df, out_tsv)
    return df


def run_of(path: Path) -> tuple[str, int]:
    """(method, fold) of a per-fold table at .../recovery/{method}/fold{k}.tsv."""
    path = Path(path)
    if not path.stem.startswith("fold") or not path.stem[4:].isdigit():
        raise ValueError(f"{path}: expected .../recovery/<method>/fold<k>.tsv")
    return path.parent.name, int(path.stem[4:])


def recovery_table(tables: list[Path], out_md: Path, split: str = "test") -> str:
    """Markdown: mean ± sd over folds of R² per source × factor and method (``random`` first),
    from per-fold tables at .../recovery/{method}/fold{k}.tsv; the text is also returned."""
    frames = []
    for path in tables:
        method, fold = run_of(path)
        frames.append(pd.read_csv(path, sep="\t").assign(method=method, fold=fold))
    df = pd.concat(frames, ignore_index=True)
    df = df[df["split"] == split]
    methods = sorted(df["method"].unique(), key=lambda m: (m != "random", m))
    sources = list(dict.fromkeys(df["source"]))
    factors = list(dict.fromkeys(df["factor"]))
    folds = sorted(df["fold"].unique())
    dataset = Path(tables[0]).parents[2].name if tables else ""
    lines = [f"### {dataset}: factor recovery (linear R² of the frozen latents, {split} subjects)", "",
             f"Ridge read-out fitted on train+val, scored on {split}; mean ± sd over folds {', '.join(map(str, folds))}; "
             "`random` is the floor. A method that found what the modalities share raises `shared` above random; "
             "`private_other` is the other modality's own factor (absent from this source's input).", "",
             "| source | factor | role | n | " + " | ".join(methods) + " |",
             "|---|---|---|---|" + "---|" * len(methods)]
    for source in sources:
        for factor in factors:
            cell = df[(df["source"] == source) & (df["factor"] == factor)]
            if cell.empty:
                continue
            values = []
            for m in methods:
                v = cell[cell["method"] == m]["r2"].dropna()
                values.append("n/a" if v.empty else f"{v.mean():.2f}" if len(v) == 1 else f"{v.mean():.2f} ± {v.std():.2f}")
            n = int(cell["n"].median())
            lines.append(f"| {source} | {factor} | {cell['role'].iloc[0]} | {n} | " + " | ".join(values) + " |")
    text = "\n".join(lines) + "\n"
    with atomic_path(Path(out_md)) as tmp:
        Path(tmp).write_text(text)
    return text
