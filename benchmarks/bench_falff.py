"""Seconds for fALFF of one OASIS-3-sized BOLD run (64 x 64 x 36 x 164, every voxel) on one CPU core.

Run:  OMP_NUM_THREADS=1 PYTHONPATH=workflow python benchmarks/bench_falff.py
Target: < 1 s. Prints the best and median of --repeats runs, for C- and Fortran-ordered
input (nibabel returns Fortran order), plus the time including the EPI mask computation.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy loads its BLAS

import numpy as np
from threadpoolctl import threadpool_limits

from mmssl.preprocess.falff import FalffSettings, falff, mean_epi_mask


def _time(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    i, j, k = np.indices((64, 64, 36))
    brain = ((i - 31.5) / 26) ** 2 + ((j - 31.5) / 30) ** 2 + ((k - 17.5) / 16) ** 2 <= 1
    data = (np.where(brain, 1000.0, 50.0)[..., None] + 10 * rng.standard_normal((64, 64, 36, 164))).astype(np.float32)
    settings = FalffSettings(dummy_volumes=0)
    with threadpool_limits(limits=1):
        for name, array in (("C-order", data), ("F-order", np.asfortranarray(data))):
            best, median = _time(lambda a=array: falff(a, 2.2, None, settings), args.repeats)
            print(f"falff 64x64x36x164 {name}, all voxels, 1 thread: best {best:.3f} s, median {median:.3f} s")
        mask = mean_epi_mask(data)  # warm nilearn's import before timing
        best, median = _time(lambda: falff(data, 2.2, mean_epi_mask(data), settings), args.repeats)
        print(f"mean-EPI mask + falff, 1 thread: best {best:.3f} s, median {median:.3f} s ({int(mask.sum())} mask voxels)")


if __name__ == "__main__":
    main()
