"""Subject-level splits. A split table has one row per subject: subject, label, split
(train / val / test / holdout). Samples (pairs, views) follow their subject, so no
subject's samples are ever in two splits of one fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from mmssl.settings import schema_settings

SPLITS = ("train", "val", "test", "holdout")


@schema_settings("splits")
class SplitSettings:
    """n_folds: K. seed: of every shuffle (authors' code: 343). test: 'pool' (the dataset's
    own test pool, e.g. MNIST's t10k files, is every fold's test split) or 'fold' (the
    k-th of K stratified parts is fold k's test split, and validation comes from the rest).
    test_fraction: share held out as the fixed test split when test='pool' and the data
    have no test pool (the 5,000 embedded digits). val_fraction: share of the non-test
    subjects used for validation when test='fold'. holdout: subjects set aside once,
    stratified, before the folds (paper's OASIS-3: 100) and never trained or tuned on.
    group_by: a column whose groups never straddle two folds' parts (leave-site-out).
    Every default is the config schema's (``splits`` section)."""

    n_folds: int
    seed: int
    test: str
    test_fraction: float
    val_fraction: float
    holdout: int
    group_by: str | None


def subjects_table(index: pd.DataFrame, group_by: str | None = None) -> pd.DataFrame:
    """One row per subject (subject, label[, pool][, group_by]) from a store index or a
    pairs table; a subject whose samples disagree on label or pool is an error, since it
    could not be split cleanly. A subject seen at several sites is grouped by its first."""
    if group_by is not None and group_by not in index.columns:
        raise ValueError(f"splits.group_by: no column {group_by!r} to group by; columns: {list(index.columns)}")
    cols = ["subject", "label"] + (["pool"] if "pool" in index.columns else [])
    table = index[cols].drop_duplicates()
    if group_by is not None:
        first = index.drop_duplicates("subject").set_index("subject")[group_by].astype(str)
        table = table.assign(**{group_by: table["subject"].map(first).to_numpy()})
    dup = table["subject"][table["subject"].duplicated()]
    if len(dup):
        raise ValueError(f"subjects with conflicting labels/pools across samples: {sorted(dup.unique())[:10]}")
    return table.reset_index(drop=True)


def _check_counts(labels: pd.Series, n_folds: int) -> None:
    counts = labels.value_counts()
    small = counts[counts < n_folds]
    if len(small):
        raise ValueError(
            f"too few subjects per class for {n_folds} stratified folds: "
            + ", ".join(f"{k}: {v}" for k, v in small.items())
            + f" (class counts: {counts.to_dict()})"
        )


def strata(labels: pd.Series) -> pd.Series:
    """Labels to stratify on: a class with a single subject cannot be stratified, so it
    joins the largest class's stratum (the other classes stay balanced)."""
    counts = labels.value_counts()
    rare = counts.index[counts < 2]
    return labels.where(~labels.isin(rare), counts.index[0])


def make_splits(subjects: pd.DataFrame, settings: SplitSettings) -> list[pd.DataFrame]:
    """subjects: (subject, label[, pool]) one row each -> K tables (subject, label, split)."""
    subj = subjects.reset_index(drop=True)
    split = pd.Series("", index=subj.index, dtype=object)
    rest = subj.index.to_numpy()
    if settings.holdout:
        rest, hold = train_test_split(
            rest, test_size=settings.holdout, stratify=subj.loc[rest, "label"], random_state=settings.seed
        )
        split[hold] = "holdout"
    if settings.test == "pool":
        has_pool = "pool" in subj.columns and (subj.loc[rest, "pool"] == "test").any()
        if has_pool:
            test = rest[subj.loc[rest, "pool"].to_numpy() == "test"]
        else:
            rest, test = train_test_split(
                rest, test_size=settings.test_fraction, stratify=subj.loc[rest, "label"], random_state=settings.seed
            )
        split[test] = "test"
        rest = np.setdiff1d(rest, test)
    elif settings.test != "fold":
        raise ValueError(f"splits.test must be 'pool' or 'fold', got {settings.test!r}")
    _check_counts(subj.loc[rest, "label"], settings.n_folds)
    folds = []
    for k, (inner, part) in enumerate(_kfold(subj, rest, settings)):
        s = split.copy()
        if settings.test == "pool":
            s[rest[part]], s[rest[inner]] = "val", "train"
        else:
            train, val = train_test_split(
                rest[inner],
                test_size=settings.val_fraction / (1 - 1 / settings.n_folds),
                stratify=strata(subj.loc[rest[inner], "label"]),
                random_state=settings.seed + k,
            )
            s[rest[part]], s[train], s[val] = "test", "train", "val"
        table = pd.DataFrame({"subject": subj["subject"], "label": subj["label"], "split": s})
        if settings.group_by is not None:
            table[settings.group_by] = subj[settings.group_by]
        folds.append(table)
    return folds


def _kfold(subj: pd.DataFrame, rest: np.ndarray, settings: SplitSettings):
    """(inner, part) index arrays into ``rest`` for each of the K folds."""
    labels = subj.loc[rest, "label"]
    if settings.group_by is None:
        return StratifiedKFold(settings.n_folds, shuffle=True, random_state=settings.seed).split(rest, labels)
    if settings.group_by not in subj.columns:
        raise ValueError(f"splits.group_by: no column {settings.group_by!r}; columns: {list(subj.columns)}")
    groups = subj.loc[rest, settings.group_by]
    if groups.nunique() < settings.n_folds:
        raise ValueError(f"splits.group_by {settings.group_by!r}: {groups.nunique()} groups ({sorted(groups.unique())}) "
                         f"cannot make {settings.n_folds} folds")
    sgkf = StratifiedGroupKFold(settings.n_folds, shuffle=True, random_state=settings.seed)
    return sgkf.split(rest, labels, groups)


def rows_of(index: pd.DataFrame, split_table: pd.DataFrame, split: str) -> np.ndarray:
    """Store rows (sorted) whose subject is in ``split`` of this fold."""
    subjects = set(split_table.loc[split_table["split"] == split, "subject"].astype(str))
    return np.sort(index.loc[index["subject"].astype(str).isin(subjects), "row"].to_numpy())


def read_split(path) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t", dtype={"subject": str})
    missing = {"subject", "label", "split"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: split table lacks columns {sorted(missing)}")
    bad = set(table["split"]) - set(SPLITS)
    if bad:
        raise ValueError(f"{path}: unknown split names {sorted(bad)}; expected {SPLITS}")
    return table
