"""The report's table on tiny synthetic probe / similarity TSVs: best mean per column in
bold (and what happens on a tie), the "(k diverged)" note, per-method fold counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmssl.report.tables import collect, markdown_table, run_of

# method -> fold -> (x accuracy, y accuracy, x~y cka, x~y svcca); None = the run diverged
RUNS: dict[str, dict[int, tuple[float, float, float, float] | None]] = {
    "A": {0: (0.80, 0.5, 0.6, 0.3), 1: (0.90, 0.5, 0.6, 0.3), 2: (0.85, 0.5, 0.9, 0.3)},
    "B": {0: (0.95, 0.5, 0.2, 0.8), 1: (0.97, 0.5, 0.4, 0.8), 2: None, 3: None},
    "C": {0: (0.70, 0.25, 0.1, 0.9)},
    "D": {0: None, 1: None},
}


def write_runs(root: Path, runs: dict[str, dict[int, tuple[float, float, float, float] | None]]) -> list[Path]:
    """The probe and similarity TSVs of every run, as the probe / similarity rules write
    them (a diverged run: one row per source or pair, NaN metrics, status 'diverged')."""
    files = []
    for method, folds in runs.items():
        for fold, values in folds.items():
            if values is None:
                probe = pd.DataFrame({"source": ["x", "y"], "split": "test", "accuracy": np.nan, "status": "diverged"})
                sim = pd.DataFrame({"source_a": ["x"], "source_b": ["y"], "split": "test", "cka": np.nan,
                                    "svcca": np.nan, "status": "diverged"})
            else:
                xa, ya, cka, svcca = values
                probe = pd.DataFrame({"source": ["x", "y"], "split": "test", "accuracy": [xa, ya], "n": 50,
                                      "status": "ok"})
                sim = pd.DataFrame({"source_a": ["x"], "source_b": ["y"], "split": "test", "n": 50, "cka": [cka],
                                    "svcca": [svcca], "status": "ok"})
            for kind, table in (("probe", probe), ("similarity", sim)):
                path = root / kind / method / f"fold{fold}.tsv"
                path.parent.mkdir(parents=True, exist_ok=True)
                table.to_csv(path, sep="\t", index=False)
                files.append(path)
    return files


def test_table_bolds_the_best_mean_notes_diverged_folds_and_counts_folds(tmp_path: Path) -> None:
    summary = collect("toy", write_runs(tmp_path, RUNS))
    table = markdown_table(summary, ["A", "B", "C", "D"])
    assert table.splitlines() == [
        "| method | folds | x accuracy | y accuracy | x~y cka | x~y svcca |",
        "|---|---|---|---|---|---|",
        # y accuracy: A and B tie at exactly 0.5; the method listed first is bold
        "| A | 3 | 0.850 ± 0.050 | **0.500 ± 0.000** | **0.700 ± 0.173** | 0.300 ± 0.000 |",
        # B's mean is over its 2 finished folds; its 2 diverged folds are noted and counted in "folds"
        "| B | 4 | **0.960 ± 0.014 (2 diverged)** | 0.500 ± 0.000 (2 diverged) | 0.300 ± 0.141 (2 diverged) "
        "| 0.800 ± 0.000 (2 diverged) |",
        "| C | 1 | 0.700 | 0.250 | 0.100 | **0.900** |",  # one fold: no sd; it may still be the best
        "| D | 2 | diverged | diverged | diverged | diverged |",  # never bold
    ]


def test_tie_goes_to_the_method_listed_first(tmp_path: Path) -> None:
    """The current rule makes no significance test: equal means are not left unmarked,
    the first of them in the --methods order is bold."""
    summary = collect("toy", write_runs(tmp_path, {"A": RUNS["A"], "B": RUNS["B"]}))
    assert "| B | 4 | **0.960 ± 0.014 (2 diverged)** | **0.500 ± 0.000 (2 diverged)** |" in markdown_table(summary, ["B", "A"])
    assert "| A | 3 | 0.850 ± 0.050 | **0.500 ± 0.000** |" in markdown_table(summary, ["A", "B"])


def test_nothing_is_bold_when_every_run_diverged_and_missing_methods_show_empty(tmp_path: Path) -> None:
    summary = collect("toy", write_runs(tmp_path, {"D": RUNS["D"]}))
    table = markdown_table(summary, ["D", "E"])
    assert "**" not in table
    assert table.splitlines()[2:] == ["| D | 2 | diverged | diverged | diverged | diverged |",
                                      "| E | 0 |  |  |  |  |"]  # E has no result file at all


def test_summary_is_long_with_one_row_per_metric_value(tmp_path: Path) -> None:
    summary = collect("toy", write_runs(tmp_path, {"A": {0: RUNS["A"][0]}, "D": {1: None}}))
    assert list(summary.columns) == ["dataset", "method", "fold", "source", "split", "metric", "value", "status"]
    rows = {(r.method, r.fold, r.source, r.metric): (r.value, r.status) for r in summary.itertuples()}
    assert set(rows) == {("A", 0, "x", "accuracy"), ("A", 0, "y", "accuracy"), ("A", 0, "x~y", "cka"),
                         ("A", 0, "x~y", "svcca"), ("D", 1, "x", "accuracy"), ("D", 1, "y", "accuracy"),
                         ("D", 1, "x~y", "cka"), ("D", 1, "x~y", "svcca")}  # "n" is an id column, not a metric
    assert rows[("A", 0, "x", "accuracy")] == (0.80, "ok") and rows[("A", 0, "x~y", "svcca")] == (0.3, "ok")
    assert np.isnan(rows[("D", 1, "x~y", "cka")][0]) and rows[("D", 1, "x~y", "cka")][1] == "diverged"


def test_result_files_must_be_named_after_method_and_fold(tmp_path: Path) -> None:
    assert run_of(tmp_path / "probe" / "L-CL-S" / "fold12.tsv") == ("L-CL-S", 12)
    with pytest.raises(ValueError, match=r"results.tsv: expected a file named fold<k>.tsv"):
        run_of(tmp_path / "probe" / "S" / "results.tsv")
