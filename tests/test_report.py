"""The report's tables on tiny synthetic probe / similarity TSVs: the floor row, the bold
rule (a best only when distinguishable), one fold's bootstrap interval, the "(k
diverged)" note, SVCCA n/a, per-method fold counts, and the paired differences against
random and S with the corrected resampled t (Nadeau-Bengio), none below 3 folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mmssl.report.commands import add_commands
from mmssl.report.tables import (best_of, collect, comparison_rows, corrected_resampled_t, markdown_table,
                                 paired_differences, paired_table, run_of, write_report)

NAN = float("nan")
SVCCA_NOTE = "svcca n/a: 4 samples < 5 x 3 kept dims"
# method -> fold -> (x accuracy, y accuracy, x~y cka, x~y svcca); None = the run diverged
RUNS: dict[str, dict[int, tuple[float, float, float, float] | None]] = {
    "random": {0: (0.50, 0.6, 0.2, 0.9), 1: (0.55, 0.6, 0.2, 0.9), 2: (0.45, 0.6, 0.2, 0.9)},
    "S": {0: (0.70, 0.5, 0.5, 0.5), 1: (0.72, 0.5, 0.5, 0.5), 2: (0.74, 0.5, 0.5, 0.5)},
    "A": {0: (0.80, 0.5, 0.6, 0.3), 1: (0.90, 0.5, 0.6, 0.3), 2: (0.85, 0.5, 0.9, 0.3)},
    "B": {0: (0.95, 0.5, 0.2, 0.8), 1: (0.98, 0.5, 0.4, 0.8), 2: None, 3: None},
    "C": {0: (0.70, 0.25, 0.1, NAN)},  # one fold; its SVCCA was n/a (4 test samples)
    "D": {0: None, 1: None},
}
# (method, fold) -> bootstrap intervals of (x accuracy, y accuracy); the probe writes one for every
# row, the table shows it only for a method with one finished fold
CI = {("C", 0): ((0.55, 0.85), (0.10, 0.40)), ("A", 0): ((0.70, 0.90), (0.40, 0.60))}



def write_run(root: Path, method: str, fold: int, probe: pd.DataFrame, sim: pd.DataFrame) -> list[Path]:
    """The probe and similarity tables of one (method, fold), as the rules lay them out."""
    paths = []
    for kind, table in (("probe", probe), ("similarity", sim)):
        path = root / kind / method / f"fold{fold}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, sep="\t", index=False)
        paths.append(path)
    return paths

def write_runs(root: Path, runs: dict[str, dict[int, tuple[float, float, float, float] | None]]) -> list[Path]:
    """The probe and similarity TSVs of every run, as the probe / similarity rules write
    them (a diverged run: one row per source or pair, NaN metrics, status 'diverged')."""
    files = []
    for method, folds in runs.items():
        for fold, values in folds.items():
            epoch = 10 + fold
            if values is None:
                probe = pd.DataFrame({"source": ["x", "y"], "split": "test", "accuracy": np.nan, "epoch": epoch,
                                      "status": "diverged"})
                sim = pd.DataFrame({"source_a": ["x"], "source_b": ["y"], "split": "test", "epoch": epoch,
                                    "cka": np.nan, "svcca": np.nan, "status": "diverged"})
            else:
                xa, ya, cka, svcca = values
                (xl, xh), (yl, yh) = CI.get((method, fold), ((NAN, NAN), (NAN, NAN)))
                probe = pd.DataFrame({"source": ["x", "y"], "split": "test", "accuracy": [xa, ya], "n": 50,
                                      "ci_low": [xl, yl], "ci_high": [xh, yh], "epoch": epoch, "status": "ok"})
                sim = pd.DataFrame({"source_a": ["x"], "source_b": ["y"], "split": "test", "n": 50, "epoch": epoch,
                                    "cka": [cka], "svcca": [svcca], "svcca_kept_a": 3, "svcca_kept_b": 3,
                                    "note": [SVCCA_NOTE if np.isnan(svcca) else ""], "status": "ok"})
            files += write_run(root, method, fold, probe, sim)
    return files


METHODS = ["S", "A", "B", "C", "D", "random"]  # random is listed last: the table puts the floor first anyway


def test_table_floor_first_bold_only_when_distinguishable(tmp_path: Path) -> None:
    summary = collect("toy", write_runs(tmp_path, RUNS))
    assert markdown_table(summary, METHODS).splitlines() == [
        # x accuracy: B's mean - sd (0.944) is above every other method's mean + sd (A: 0.900; C's one
        # fold: its bootstrap high end 0.850) -> bold. y: S, A, B tie at 0.5 and the floor is above them.
        # cka: C has one fold and no interval (similarities have none) -> undecidable. svcca: the floor
        # is on top.
        "| method | folds | x accuracy | y accuracy (no clear best) | x~y cka (no clear best) "
        "| x~y svcca (no clear best) |",
        "|---|---|---|---|---|---|",
        "| random (floor) | 3 | 0.500 ± 0.050 | 0.600 ± 0.000 | 0.200 ± 0.000 | 0.900 ± 0.000 |",
        "| S | 3 | 0.720 ± 0.020 | 0.500 ± 0.000 | 0.500 ± 0.000 | 0.500 ± 0.000 |",
        "| A | 3 | 0.850 ± 0.050 | 0.500 ± 0.000 | 0.700 ± 0.173 | 0.300 ± 0.000 |",
        # B's mean is over its 2 finished folds; its 2 diverged folds are noted and counted in "folds"
        "| B | 4 | **0.965 ± 0.021 (2 diverged)** | 0.500 ± 0.000 (2 diverged) | 0.300 ± 0.141 (2 diverged) "
        "| 0.800 ± 0.000 (2 diverged) |",
        # one fold: the value and its 95% bootstrap interval; SVCCA was not reported (too few samples)
        "| C | 1 | 0.700 [0.550, 0.850] | 0.250 [0.100, 0.400] | 0.100 | n/a |",
        "| D | 2 | diverged | diverged | diverged | diverged |",  # never bold
    ]


def test_the_floor_is_never_bold_and_an_overlap_bolds_nothing(tmp_path: Path) -> None:
    # without B, A's x accuracy (0.850 ± 0.050: low end 0.800) overlaps C's one fold, whose
    # bootstrap interval reaches 0.850 -> nothing bold
    summary = collect("toy", write_runs(tmp_path, {m: RUNS[m] for m in ("random", "S", "A", "C")}))
    lines = markdown_table(summary, ["random", "S", "A", "C"]).splitlines()
    assert lines[0].startswith("| method | folds | x accuracy (no clear best) |") and "**" not in "".join(lines)
    # without C too, A is clearly best in x; in y the floor's 0.600 is the highest mean, yet it is not bold
    summary = collect("toy", write_runs(tmp_path / "2", {m: RUNS[m] for m in ("random", "S", "A")}))
    assert markdown_table(summary, ["random", "S", "A"]).splitlines() == [
        "| method | folds | x accuracy | y accuracy (no clear best) | x~y cka | x~y svcca (no clear best) |",
        "|---|---|---|---|---|---|",
        "| random (floor) | 3 | 0.500 ± 0.050 | 0.600 ± 0.000 | 0.200 ± 0.000 | 0.900 ± 0.000 |",
        "| S | 3 | 0.720 ± 0.020 | 0.500 ± 0.000 | 0.500 ± 0.000 | 0.500 ± 0.000 |",
        "| A | 3 | **0.850 ± 0.050** | 0.500 ± 0.000 | **0.700 ± 0.173** | 0.300 ± 0.000 |",
    ]


def test_best_of_rule() -> None:
    # exact tie: never bold, whatever the intervals
    assert best_of({"A": 0.5, "B": 0.5}, {"A": (0.5, 0.5), "B": (0.5, 0.5)}) == (None, True)
    # strictly above every other interval, the floor's included
    assert best_of({"A": 0.9, "B": 0.5, "random": 0.6}, {"A": (0.8, 1.0), "B": (0.4, 0.6), "random": (0.5, 0.7)}) \
        == ("A", False)
    assert best_of({"A": 0.9, "random": 0.6}, {"A": (0.7, 1.0), "random": (0.5, 0.7)}) == (None, True)  # touching
    assert best_of({"A": 0.9, "B": 0.5}, {"A": (0.8, 1.0), "B": None}) == (None, True)  # B's spread unknown
    assert best_of({"random": 0.9, "B": 0.5}, {"random": (0.9, 0.9), "B": (0.5, 0.5)}) == (None, True)
    assert best_of({"A": 0.9}, {"A": (0.8, 1.0)}) == (None, False)  # nothing to compare with


def test_nothing_is_bold_when_every_run_diverged_and_missing_methods_show_empty(tmp_path: Path) -> None:
    summary = collect("toy", write_runs(tmp_path, {"D": RUNS["D"]}))
    table = markdown_table(summary, ["D", "E"])
    assert "**" not in table and "no clear best" not in table
    assert table.splitlines()[2:] == ["| D | 2 | diverged | diverged | diverged | diverged |",
                                      "| E | 0 |  |  |  |  |"]  # E has no result file at all


def test_paired_differences_against_random_and_s(tmp_path: Path) -> None:
    summary = collect("toy", write_runs(tmp_path, RUNS))
    paired = paired_differences(summary, METHODS)
    x = paired[paired["source"] == "x"].set_index(["method", "base"])
    # A - random on x, folds 0, 1, 2: 0.30, 0.35, 0.40 -> mean 0.35, sd 0.05, t = 0.35 / (0.05 / sqrt 3)
    # -> mean 0.35, sd 0.05; the folds run 0..3 (B's diverged 2 and 3 count), so K = 4 and
    # n_test/n_train = 1/(K - 1) = 1/3: t = 0.35 / sqrt((1/3 + 1/3) 0.05²) = 8.5732, df 2
    a = x.loc[("A", "random")]
    assert (a["mean"], a["sd"], a["k"], a["folds"]) == (pytest.approx(0.35), pytest.approx(0.05), 3, "0,1,2")
    assert (a["ratio"], a["ratio_from"]) == (pytest.approx(1 / 3), "1/(K − 1), K = 4 folds")
    se = np.sqrt((1 / 3 + 1 / 3) * 0.05 ** 2)
    assert a["t"] == pytest.approx(0.35 / se) == pytest.approx(8.573214)
    assert a["p"] == pytest.approx(0.0133339, rel=1e-5)
    assert (a["ci_low"], a["ci_high"]) == (pytest.approx(0.35 - 4.302653 * se), pytest.approx(0.35 + 4.302653 * se))
    # B - S: only B's 2 finished folds pair up: 0.25, 0.26 -> mean and sd, but no t, p or interval
    b = x.loc[("B", "S")]
    assert (b["mean"], b["sd"], b["k"], b["folds"]) == (pytest.approx(0.255), pytest.approx(0.01 / np.sqrt(2)), 2, "0,1")
    assert np.isnan([b["t"], b["p"], b["ci_low"], b["ci_high"]]).all()
    # C (one fold) and D (diverged) have no paired differences; every method but the base itself is compared
    assert sorted(set(x.index)) == sorted({("S", "random"), ("A", "random"), ("B", "random"), ("random", "S"),
                                           ("A", "S"), ("B", "S")})
    assert paired_table(paired, METHODS).splitlines() == [
        "## Paired differences vs random and vs S (per-fold)",
        "",
        "| method | vs | x accuracy | y accuracy |",
        "|---|---|---|---|",
        "| S | random | +0.220 ± 0.062 (t = 4.31, p = 0.050, 3 folds) "
        "| -0.100 ± 0.000 (t = -inf, p < 0.001, 3 folds) |",
        "| A | random | +0.350 ± 0.050 (t = 8.57, p = 0.013, 3 folds) "
        "| -0.100 ± 0.000 (t = -inf, p < 0.001, 3 folds) |",
        "| B | random | +0.440 ± 0.014 (2 folds; t, p: n/a (k < 3 folds)) "
        "| -0.100 ± 0.000 (2 folds; t, p: n/a (k < 3 folds)) |",
        "| random (floor) | S | -0.220 ± 0.062 (t = -4.31, p = 0.050, 3 folds) "
        "| +0.100 ± 0.000 (t = +inf, p < 0.001, 3 folds) |",
        "| A | S | +0.130 ± 0.044 (t = 3.65, p = 0.067, 3 folds) | +0.000 ± 0.000 (t = n/a, p = n/a, 3 folds) |",
        "| B | S | +0.255 ± 0.007 (2 folds; t, p: n/a (k < 3 folds)) "
        "| +0.000 ± 0.000 (2 folds; t, p: n/a (k < 3 folds)) |",
        "",
        "Mean difference ± sd over the k folds where both finished. t: the corrected resampled t of Nadeau & "
        "Bengio (2003), mean / sqrt((1/k + n_test/n_train) · sd²), df k − 1, with its two-sided p; the 95% "
        "interval is in summary.tsv. The correction accounts for the folds' overlapping training sets, which the "
        "naive paired t ignores. n_test/n_train = 0.3333: 1/(K − 1), K = 4 folds (from the number of folds: the "
        "result tables carry no training-set size). With fewer than 3 folds (1 degree of freedom) no t or p is "
        "given: n/a.",
    ]
    rows = comparison_rows(paired, "toy")
    r = rows[(rows["method"] == "A") & (rows["metric"] == "accuracy_minus_random") & (rows["source"] == "x")].iloc[0]
    assert r["value"] == pytest.approx(0.35) and np.isnan(r["fold"]) and r["status"] == "ok"
    assert r["note"] == ("corrected resampled t (Nadeau-Bengio, n_test/n_train=0.3333) over folds 0,1,2: "
                         "sd=0.05 t=8.57321 df=2 p=0.01333")
    r = rows[(rows["method"] == "B") & (rows["metric"] == "accuracy_minus_S") & (rows["source"] == "x")].iloc[0]
    assert r["value"] == pytest.approx(0.255) and np.isnan(r["ci_low"]) and np.isnan(r["ci_high"])
    assert r["note"] == "folds 0,1: sd=0.00707107; t, p, interval n/a (k < 3 folds)"
    # no fold pairs up: the section says so; no baseline among the methods: no section
    one = collect("toy", write_runs(tmp_path / "one", {"random": {0: RUNS["random"][0]}, "A": {0: RUNS["A"][0]}}))
    assert paired_table(paired_differences(one, ["random", "A"]), ["random", "A"]).splitlines()[2] == \
        "None: they need at least 2 folds in which both the method and random finished."
    assert paired_table(paired_differences(summary, ["A", "B"]), ["A", "B"]) == ""


# A - random per fold, the hand-worked example: k = 5 folds of 5-fold cross-validation
DIFFS = [0.02, 0.03, 0.01, 0.04, 0.02]


def write_pairs(root: Path, diffs: list[float]) -> list[Path]:
    """random and A, one fold per difference (folds 0..k-1), x accuracy A - random = diffs[fold]."""
    files = []
    for fold, d in enumerate(diffs):
        for method, acc in (("random", 0.70 + 0.01 * fold), ("A", 0.70 + 0.01 * fold + d)):
            probe = pd.DataFrame({"source": ["x"], "split": "test", "accuracy": [acc], "n": 1000, "epoch": 3,
                                  "status": "ok"})
            sim = pd.DataFrame({"source_a": ["x"], "source_b": ["x"], "split": "test", "n": 1000, "epoch": 3,
                                "cka": [1.0], "status": "ok"})
            files += write_run(root, method, fold, probe, sim)
    return files


def test_corrected_resampled_t_by_hand(tmp_path: Path) -> None:
    # by hand: mean = 0.12 / 5 = 0.024; squared deviations from it (-0.004, 0.006, -0.014,
    # 0.016, -0.004) sum to 520e-6, so var (ddof 1) = 520e-6 / 4 = 1.3e-4. 5-fold CV:
    # n_test/n_train = 1/4. Corrected variance of the mean: (1/5 + 1/4) * 1.3e-4 = 5.85e-5.
    k, mean, var, ratio = 5, 0.024, 1.3e-4, 1 / 4
    se = np.sqrt((1 / k + ratio) * var)
    t = mean / se  # 3.13786
    p = 2 * stats.t.sf(t, k - 1)  # 0.034920
    half = stats.t.ppf(0.975, k - 1) * se  # 2.776445 * se
    assert (t, p) == (pytest.approx(3.137858, rel=1e-6), pytest.approx(0.0349197, rel=1e-5))
    got = corrected_resampled_t(DIFFS, ratio)
    assert got == pytest.approx((mean, np.sqrt(var), t, p, mean - half, mean + half), rel=1e-9)
    # the same through the report: K = 5 comes from the folds 0..4 of the results
    summary = collect("toy", write_pairs(tmp_path, DIFFS))
    a = paired_differences(summary, ["random", "A"]).set_index(["method", "base"]).loc[("A", "random")]
    assert (a["k"], a["ratio"], a["ratio_from"]) == (5, pytest.approx(0.25), "1/(K − 1), K = 5 folds")
    assert (a["mean"], a["t"], a["p"], a["ci_low"], a["ci_high"]) == pytest.approx(
        (mean, t, p, mean - half, mean + half), rel=1e-9)
    assert paired_table(paired_differences(summary, ["random", "A"]), ["random", "A"]).splitlines()[4] == \
        "| A | random | +0.024 ± 0.011 (t = 3.14, p = 0.035, 5 folds) |"
    # the design's K, or the actual n_test / n_train (a fixed test pool: 1,000 test, 3,200 train), when given
    ten = paired_differences(summary, ["random", "A"], n_folds=10).iloc[0]
    assert (ten["ratio"], ten["t"]) == (pytest.approx(1 / 9), pytest.approx(mean / np.sqrt((1 / 5 + 1 / 9) * var)))
    pool = paired_differences(summary, ["random", "A"], test_train_ratio=1000 / 3200).iloc[0]
    assert (pool["ratio_from"], pool["t"]) == ("given", pytest.approx(mean / np.sqrt((1 / 5 + 0.3125) * var)))


def test_two_folds_give_no_t_or_p(tmp_path: Path) -> None:
    mean, sd, t, p, low, high = corrected_resampled_t([0.02, 0.03], 1 / 4)
    assert (mean, sd) == (pytest.approx(0.025), pytest.approx(0.01 / np.sqrt(2)))
    assert np.isnan([t, p, low, high]).all()
    summary = collect("toy", write_pairs(tmp_path, DIFFS[:2]))
    paired = paired_differences(summary, ["random", "A"])
    assert len(paired) == 1 and np.isnan(paired[["t", "p", "ci_low", "ci_high"]].to_numpy(dtype=float)).all()
    table = paired_table(paired, ["random", "A"])
    assert "| A | random | +0.025 ± 0.007 (2 folds; t, p: n/a (k < 3 folds)) |" in table
    assert "With fewer than 3 folds (1 degree of freedom) no t or p is given: n/a." in table
    row = comparison_rows(paired, "toy").iloc[0]
    assert row["value"] == pytest.approx(0.025) and np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])
    assert "t=" not in row["note"] and row["note"].endswith("t, p, interval n/a (k < 3 folds)")


def test_corrected_t_is_smaller_than_the_naive_paired_t() -> None:
    d = np.array(DIFFS)
    k = len(d)
    naive_t = d.mean() / (d.std(ddof=1) / np.sqrt(k))  # 4.7068: ignores the overlapping training sets
    naive_p = 2 * stats.t.sf(abs(naive_t), k - 1)
    for ratio in (1 / 4, 1 / 9, 1000 / 3200):
        _, _, t, p, low, high = corrected_resampled_t(d, ratio)
        assert 0 < t < naive_t and p > naive_p
        assert t / naive_t == pytest.approx(np.sqrt((1 / k) / (1 / k + ratio)))
        naive_half = stats.t.ppf(0.975, k - 1) * d.std(ddof=1) / np.sqrt(k)
        assert high - low > 2 * naive_half
    _, _, t, _, _, _ = corrected_resampled_t(-d, 1 / 4)
    assert -naive_t < t < 0


def test_summary_is_long_with_one_row_per_metric_value(tmp_path: Path) -> None:
    summary = collect("toy", write_runs(tmp_path, {"A": {0: RUNS["A"][0]}, "C": RUNS["C"], "D": {1: None}}))
    assert list(summary.columns) == ["dataset", "method", "fold", "source", "split", "metric", "value", "status", "n",
                                     "ci_low", "ci_high", "epoch", "note"]
    rows = {(r.method, r.fold, r.source, r.metric): r for r in summary.itertuples()}
    assert set(rows) == {(m, f, s, k) for m, f in (("A", 0), ("C", 0), ("D", 1))
                         for s, k in (("x", "accuracy"), ("y", "accuracy"), ("x~y", "cka"), ("x~y", "svcca"))}
    a = rows[("A", 0, "x", "accuracy")]  # n, the interval and the epoch are columns, not metrics
    assert (a.value, a.status, a.n, a.ci_low, a.ci_high, a.epoch, a.note) == (0.80, "ok", 50, 0.70, 0.90, 10, "")
    assert np.isnan(rows[("A", 0, "x~y", "cka")].ci_low)  # an interval belongs to the probe metric only
    c = rows[("C", 0, "x~y", "svcca")]
    assert np.isnan(c.value) and c.note == SVCCA_NOTE and rows[("C", 0, "x~y", "cka")].note == ""
    d = rows[("D", 1, "x~y", "cka")]
    assert np.isnan(d.value) and d.status == "diverged" and d.epoch == 11


def test_report_command_writes_summary_and_both_tables(tmp_path: Path) -> None:
    files = write_runs(tmp_path, RUNS)
    parser = __import__("argparse").ArgumentParser()
    add_commands(parser.add_subparsers())
    out = tmp_path / "out"
    args = parser.parse_args(["report", "--dataset", "toy", "--methods", *METHODS, "--inputs", *map(str, files),
                              "--summary", str(out / "summary.tsv"), "--table", str(out / "table.md"),
                              "--figure", str(out / "figure.png"), "--n-folds", "5"])
    args.func(args)
    table = (out / "table.md").read_text()
    assert "n_test/n_train = 0.25: 1/(K − 1), K = 5 folds" in table  # --n-folds over the results' folds 0..3
    assert "| random (floor) | 3 |" in table and "| B | 4 | **0.965 ± 0.021 (2 diverged)** |" in table
    assert "Test sets: n = 50 per fold." in table
    assert "SVCCA n/a: reported only with at least 5 evaluation samples per dimension SVCCA keeps " \
           "(here: 4 samples, 3 kept dims)" in table
    assert "## Paired differences vs random and vs S (per-fold)" in table
    summary = pd.read_csv(out / "summary.tsv", sep="\t")
    assert list(summary.columns)[:8] == ["dataset", "method", "fold", "source", "split", "metric", "value", "status"]
    diff = summary[summary["metric"] == "accuracy_minus_random"].set_index(["method", "source"])
    assert diff.loc[("A", "x"), "value"] == pytest.approx(0.35) and diff["fold"].isna().all()
    assert set(summary.loc[summary["metric"] == "svcca", "note"].dropna()) == {SVCCA_NOTE}
    assert (out / "figure.png").stat().st_size > 1000


def test_result_files_must_be_named_after_method_and_fold(tmp_path: Path) -> None:
    assert run_of(tmp_path / "probe" / "L-CL-S" / "fold12.tsv") == ("L-CL-S", 12)
    with pytest.raises(ValueError, match=r"results.tsv: expected a file named fold<k>.tsv"):
        run_of(tmp_path / "probe" / "S" / "results.tsv")


def write_missing_runs(root: Path) -> list[Path]:
    """Two methods, two folds of a dataset where some samples lack source y: x is probed
    on 50 test samples, y on 30 (31 in fold 1), the pair on 28; in fold 1 y's probe was n/a
    (no val sample had y), the same for both methods, as it depends on the data only."""
    files = []
    for method, shift in (("random", 0.0), ("A", 0.3)):
        for fold in (0, 1):
            y_na = fold == 1
            probe = pd.DataFrame({"source": ["x", "y"], "split": "test", "accuracy": [0.5 + shift + 0.01 * fold,
                                                                                     NAN if y_na else 0.4 + shift],
                                  "n": [50, 31 if fold else 30], "ci_low": NAN, "ci_high": NAN,
                                  "note": ["", "accuracy n/a: y: no val samples" if y_na else ""], "epoch": 3,
                                  "status": "ok"})
            sim = pd.DataFrame({"source_a": ["x"], "source_b": ["y"], "split": "test", "n": 28, "epoch": 3,
                                "cka": [0.2 + shift + 0.01 * fold], "svcca": [0.1 + shift], "svcca_kept_a": 3,
                                "svcca_kept_b": 3, "note": "", "status": "ok"})
            files += write_run(root, method, fold, probe, sim)
    return files


def test_n_per_column_when_sources_differ_and_na_folds_are_counted(tmp_path: Path) -> None:
    files = write_missing_runs(tmp_path)
    summary = collect("toy", files)
    assert markdown_table(summary, ["A", "random"]).splitlines() == [
        "| method | folds | x accuracy (n = 50) | y accuracy (n = 30; no clear best) | x~y cka (n = 28) "
        "| x~y svcca (n = 28) |",
        "|---|---|---|---|---|---|",
        "| random (floor) | 2 | 0.505 ± 0.007 | 0.400 (1 n/a) | 0.205 ± 0.007 | 0.100 ± 0.000 |",
        # y: one finished fold (n = 30; the n/a fold's 31 is not what the value stands on) and no
        # bootstrap interval -> not decidable; the n/a fold is said
        "| A | 2 | **0.805 ± 0.007** | 0.700 (1 n/a) | **0.505 ± 0.007** | **0.400 ± 0.000** |",
    ]
    out = tmp_path / "out"
    full = write_report("toy", files, ["random", "A"], out / "summary.tsv", out / "table.md", out / "figure.png")
    table = (out / "table.md").read_text()
    assert "Test sets: n = 30–50 per fold. Each source is probed on the samples having it" in table
    assert "\nNot computed (n/a) for lack of samples; see `note` in summary.tsv:\n\n" \
           "- `y accuracy`, fold 1: y: no val samples\n" in table
    # summary.tsv: machine-readable n per (method, fold, source, metric), the n/a row's note kept
    back = pd.read_csv(out / "summary.tsv", sep="\t")
    acc = back[(back["metric"] == "accuracy") & back["fold"].notna()].set_index(["method", "fold", "source"])
    assert acc["n"].to_dict() == {(m, f, s): n for m in ("random", "A") for f, s, n in
                                  ((0.0, "x", 50), (0.0, "y", 30), (1.0, "x", 50), (1.0, "y", 31))}
    assert acc.loc[("A", 1.0, "y"), "note"] == "accuracy n/a: y: no val samples" and np.isnan(acc.loc[("A", 1.0, "y"), "value"])
    assert len(full) == len(back)
    # where n does not differ between sources the titles carry no n (the tables above: n = 50 everywhere)
    assert "(n = " not in markdown_table(collect("toy", write_runs(tmp_path / "same", RUNS)), METHODS)
