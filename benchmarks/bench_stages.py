"""Wall time of each workflow stage, read from the benchmark files Snakemake writes
(results/{dataset}/benchmarks/<rule>/...tsv, one per job).

    python benchmarks/bench_stages.py [results]

Prints a markdown table: dataset, stage, jobs, total s, mean s, max s, and max RSS.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def collect(results: Path) -> pd.DataFrame:
    rows = []
    for f in sorted(results.glob("*/benchmarks/**/*.tsv")):
        rel = f.relative_to(results)
        dataset, stage = rel.parts[0], rel.parts[2] if len(rel.parts) > 3 else Path(rel.parts[2]).stem
        b = pd.read_csv(f, sep="\t")
        rows.append({"dataset": dataset, "stage": stage, "job": str(rel), "s": float(b["s"].iloc[0]),
                     "max_rss_mb": float(pd.to_numeric(b["max_rss"], errors="coerce").iloc[0])})
    return pd.DataFrame(rows)


def main() -> None:
    results = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    df = collect(results)
    if df.empty:
        sys.exit(f"no benchmark files under {results}/*/benchmarks: run the workflow first")
    table = df.groupby(["dataset", "stage"]).agg(jobs=("s", "size"), total_s=("s", "sum"), mean_s=("s", "mean"),
                                                 max_s=("s", "max"), max_rss_mb=("max_rss_mb", "max"))
    table = table.round(1).reset_index()
    print("| " + " | ".join(table.columns) + " |")
    print("|" + "---|" * len(table.columns))
    for row in table.itertuples(index=False):
        print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
