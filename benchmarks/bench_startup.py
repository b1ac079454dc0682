"""Per-job start-up: the imports each rule's `mmssl` command pays before it does any work,
against a bare interpreter, and the demo's share of it from its benchmark files.

    python benchmarks/bench_startup.py [--repeat 5] [--results results]

Every rule is its own process (Snakemake's shell jobs), so each job pays its command's
imports once. Reports, per command, the minimum over ``--repeat`` runs of
``python -c "<the command's imports>"`` and of ``python -c pass``, and whether torch or
nilearn was imported; with ``--results``, the demo's jobs per rule from
``results/*/benchmarks`` and an estimate of the start-up share (jobs x import time / the
jobs' wall time).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

# what each rule's command imports before it works (the functions it calls, as cli.py runs them)
COMMANDS = {
    "train": "import mmssl.train.loop",
    "embed": "import mmssl.evaluate.embed",
    "probe (binary, MRI)": "import mmssl.evaluate.commands, mmssl.evaluate.probe",
    "similarity": "import mmssl.evaluate.commands, mmssl.evaluate.similarity",
    "report": "import mmssl.report.tables",
    "collect": "import mmssl.preprocess.commands",
    "discover": "import mmssl.bids.discovery",
    "preprocess-anat": "import mmssl.preprocess.pipeline",
    "maps": "import mmssl.maps.pipeline",
}
RULE_OF = {"probe (binary, MRI)": "probe", "preprocess-anat": "preprocess"}


def seconds(code: str, repeat: int) -> tuple[float, str]:
    best, loaded = float("inf"), ""
    probe = f"{code}; import sys; print(','.join(m for m in ('torch', 'nilearn', 'sklearn') if m in sys.modules))"
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
        best, loaded = min(best, time.perf_counter() - t0), out
    return best, loaded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--results", type=Path, help="a finished demo's results folder (its benchmark files)")
    args = parser.parse_args(argv)
    bare, _ = seconds("pass", args.repeat)
    print(f"bare interpreter: {bare:.2f} s")
    walls = {}
    if args.results:
        rows = [pd.read_csv(f, sep="\t").assign(rule=f.relative_to(args.results).parts[2].removesuffix(".tsv"))
                for f in args.results.glob("*/benchmarks/**/*.tsv")]
        if rows:
            table = pd.concat(rows)
            walls = table.groupby("rule")["s"].agg(["count", "sum"]).to_dict("index")
    print("| command | imports (s, min of repeats) | minus bare | loads | demo jobs | demo wall (s) | start-up share |")
    print("|---|---|---|---|---|---|---|")
    for name, code in COMMANDS.items():
        t, loaded = seconds(code, args.repeat)
        rule = RULE_OF.get(name, name)
        jobs = walls.get(rule, {})
        share = f"{jobs['count'] * (t - bare) / jobs['sum']:.0%}" if jobs.get("sum") else ""
        print(f"| {name} | {t:.2f} | {t - bare:.2f} | {loaded or '-'} | {jobs.get('count', '')} | "
              f"{jobs.get('sum', 0):.0f} | {share} |")


if __name__ == "__main__":
    main()
