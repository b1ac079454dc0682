"""Wall time of planning (``snakemake -n``) for the paper config at OASIS-3 scale.

    python benchmarks/bench_dryrun.py [--subjects 800] [--repeat 3] [--snakefile PATH]
                                      [--profile-out FILE.prof] [--keep DIR]

Builds a zero-byte OASIS-3-shaped BIDS tree (benchmarks/make_oasis_tree.py) and zero-byte
MNIST IDX / SVHN .mat files in a temporary folder, writes resources/configs/paper.yaml with
those paths, runs discovery for real (the ``discover`` checkpoint: names only, so empty
files do), then times ``snakemake -n --cores 1`` and prints the wall time of each repeat,
the minimum, and the job count per rule.

--snakefile: the Snakefile of another checkout (e.g. a copy with a fix to compare).
--profile-out: also run the dry run once under cProfile and write the stats there
  (read with ``python -m pstats FILE`` or snakeviz).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from make_oasis_tree import make_oasis_tree  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from dryrun import job_counts  # noqa: E402

MNIST_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
SVHN_FILES = ["train_32x32.mat", "test_32x32.mat"]


def paper_config(work: Path, tree: dict) -> Path:
    config = yaml.safe_load((ROOT / "resources" / "configs" / "paper.yaml").read_text())
    mnist, svhn = work / "raw" / "mnist", work / "raw" / "svhn"
    for folder, files in ((mnist, MNIST_FILES), (svhn, SVHN_FILES)):
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            (folder / f).touch()
    ds = config["datasets"]
    ds["two_view_mnist"]["path"] = str(mnist)
    ds["mnist_svhn"].update(mnist_path=str(mnist), svhn_path=str(svhn))
    ds["oasis3"].update(bids_dir=tree["bids_dir"], clinical_csv=tree["clinical_csv"])
    path = work / "paper.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(snakefile: Path, work: Path, config: Path, *args: str, profile: Path | None = None):
    cmd = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else []), "-m", "snakemake", *args,
           "-s", str(snakefile), "--directory", str(work), "--cores", "1", "--configfile", str(config)]
    env = {**os.environ, "PYTHONPATH": str(snakefile.resolve().parent / "workflow")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--snakefile", type=Path, default=ROOT / "Snakefile")
    parser.add_argument("--profile-out", type=Path)
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_dryrun_") as tmp:
        work = (args.keep or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        tree = make_oasis_tree(work / "oasis3", args.subjects, args.seed)
        print(f"tree: {tree['subjects']} subjects, {tree['sessions']} sessions, {tree['T1w']} T1w, {tree['bold']} BOLD runs")
        config = paper_config(work, tree)
        snakefile = args.snakefile.resolve()
        discover_targets = [f"results/{ds}/samples.tsv" for ds, spec in yaml.safe_load(config.read_text())["datasets"].items()
                            if spec.get("kind") == "bids_mri"]
        _, seconds = snakemake(snakefile, work, config, *discover_targets)
        print(f"discovery (real run of the checkpoint): {seconds:.1f} s")
        times, counts = [], {}
        for _ in range(args.repeat):
            proc, seconds = snakemake(snakefile, work, config, "-n")
            times.append(seconds)
            counts = job_counts(proc.stdout)
            print(f"dry run: {seconds:.1f} s")
        print(f"dry run min of {len(times)}: {min(times):.1f} s  ({snakefile})")
        for rule, n in sorted(counts.items(), key=lambda kv: (kv[0] == "total", kv[0])):
            print(f"  {rule:<16} {n}")
        if args.profile_out:
            _, seconds = snakemake(snakefile, work, config, "-n", profile=args.profile_out.resolve())
            print(f"profiled dry run: {seconds:.1f} s -> {args.profile_out}")


if __name__ == "__main__":
    main()
