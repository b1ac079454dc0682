"""Data path of 3D training, without the model: how many samples/s the loader can feed.

A store like one fold of OASIS-3 (two float16 sources of 64^3, memory-mapped, as
``pack`` writes it) is read by ``mmssl.train.loader.BatchLoader`` with class-balanced sampling
and batch 64 (batches stay float16, as the loader hands them to the device); then the
float32 cast and the batched pad-and-crop + flip augmentation of ``mmssl.augment`` run
on the CPU (with CUDA both run on the GPU, so only the first column is host work). Compare these rates with the training
step's samples/s (bench_methods.py --dims 3): the loader must be much faster than the
step for the step never to wait. The first pass reads the files from disk, later passes
from the page cache (what a job sees after its first epoch).

    OMP_NUM_THREADS=1 PYTHONPATH=workflow python benchmarks/bench_loader.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmssl.augment import AugmentSettings, augment
from mmssl.data.prefetch import prefetched
from mmssl.data.store import read_store, write_store
from mmssl.train.loader import BatchLoader
from mmssl.types import SourceSpec


def make_store(folder: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    index = pd.DataFrame({"sample": [f"p{i}" for i in range(n)], "subject": [f"s{i}" for i in range(n)],
                          "label": rng.choice(["HC", "AD", "other"], n, p=[0.6, 0.25, 0.15])})
    specs = [SourceSpec("T1w", 1, size, dims=3), SourceSpec("fALFF", 1, size, dims=3)]
    arrays = {s.name: rng.standard_normal((n, 1, size, size, size), dtype=np.float32).astype(np.float16) for s in specs}
    return write_store(folder / "store", index, arrays, specs)


def rate(loader: BatchLoader, aug: AugmentSettings | None, prefetch: int, cast: bool = True) -> float:
    gen = torch.Generator().manual_seed(0)
    t0, n = time.perf_counter(), 0
    for xs, y, _, _ in prefetched(loader, prefetch):
        if cast:
            xs = {k: v.float() for k, v in xs.items()}  # what Trainer._to_device does on the device
        if aug is not None:
            xs = augment(xs, aug, gen)
        n += len(y)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=512, help="samples in the store")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--pad", type=int, default=8, help="augment pad (authors' code: 8)")
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        store = read_store(make_store(Path(tmp), args.n, args.size))
        loader = BatchLoader(store, np.arange(args.n), args.batch, shuffle=True, balanced=True, seed=0)
        print(f"store: {args.n} samples x 2 sources of {args.size}^3 float16, batch {args.batch}")
        print("| pass | loader (float16, host part on a GPU) | + cast to float32 | + augment (pad %d, flip 0.5) | + augment, prefetch 2 |" % args.pad)
        print("|---|---|---|---|---|")
        aug = AugmentSettings(pad=args.pad, flip=0.5)
        for p in range(args.passes):
            print(f"| {p + 1} | {rate(loader, None, 0, cast=False):.0f} | {rate(loader, None, 0):.0f} "
                  f"| {rate(loader, aug, 0):.0f} | {rate(loader, aug, 2):.0f} |")


if __name__ == "__main__":
    main()
