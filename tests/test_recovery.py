"""Factor recovery (mmssl recovery): the linear R² of known generating factors from frozen
latents, fitted on train+val subjects and scored on test subjects only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmssl.evaluate.latents import analyses, save_latents
from mmssl.evaluate.recovery import factor_role, recover, recovery_table, run_recovery

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from dryrun import job_counts  # noqa: E402

FACTORS = ["shared", "private_T1w", "private_fALFF", "nuisance_head"]


def draws(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, len(FACTORS)))
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 5) + ["test"] * (n - n // 2 - n // 5))
    return rng, y, split


def test_a_latent_linear_in_the_shared_factor_recovers_it_and_nothing_else():
    rng, y, split = draws()
    mixing = rng.standard_normal((1, 16))
    z = y[:, :1] @ mixing + 0.01 * rng.standard_normal((len(y), 16))  # 16 dims, all a function of s
    out = recover(z, y, split, ("test",), n_boot=200)["test"]
    assert out["r2"][0] > 0.99 and out["ci_low"][0] > 0.98
    # ~0: below 0.05, and no further below 0 than a 90-subject test set's noise
    assert np.all(out["r2"][1:] < 0.05) and np.all(out["r2"][1:] > -0.2), out["r2"]
    assert out["n"] == (split == "test").sum() and out["n_fit"] == (split != "test").sum()


def test_a_latent_of_pure_noise_recovers_nothing():
    rng, y, split = draws()
    z = rng.standard_normal((len(y), 32))
    out = recover(z, y, split, ("test",), n_boot=200)["test"]
    assert np.all(out["r2"] < 0.05), out["r2"]
    assert np.all(out["ci_low"] < 0.0)


def test_the_read_out_is_fitted_on_train_and_val_only():
    """z follows s on the fit rows and -s on the test rows: fitted honestly the read-out
    predicts -s on test (R² = 1 - 4 = -3); a fit that saw the test rows would not."""
    rng, y, split = draws()
    sign = np.where(split == "test", -1.0, 1.0)[:, None]
    z = sign * y[:, :1] + 0.01 * rng.standard_normal((len(y), 1))
    out = recover(z, y, split, ("test",), n_boot=0)["test"]
    assert out["r2"][0] < -2.5, out["r2"]


def test_too_few_rows_give_nan():
    _, y, split = draws(40)
    out = recover(np.ones((40, 2)), y, np.where(split == "test", "holdout", split), ("test",), n_boot=10)
    assert np.isnan(out["test"]["r2"]).all() and out["test"]["n"] == 0


def test_roles():
    assert [factor_role(f, "T1w") for f in FACTORS] == ["shared", "private_own", "private_other", "nuisance"]


@pytest.fixture
def run(tmp_path):
    """A latents file (T1w: linear in s and its own private factor; fALFF: noise, missing on
    some rows) and a store index with the factors, as embed and known_mri write them."""
    rng, y, split = draws(200, seed=1)
    n = len(y)
    ids = np.array([f"sub-{i:04d}" for i in range(n)])
    store = tmp_path / "store"
    store.mkdir()
    pd.DataFrame({"row": np.arange(n), "sample": ids, "subject": ids, "label": "HC",
                  **{f: y[:, j].round(5) for j, f in enumerate(FACTORS)}}).to_csv(store / "index.tsv", sep="\t",
                                                                                   index=False)
    present = {"T1w": np.ones(n, bool), "fALFF": rng.random(n) > 0.3}
    z = {"T1w": np.c_[y[:, :2], rng.standard_normal((n, 6))].astype(np.float32) @ rng.standard_normal((8, 8)).astype(np.float32),
         "fALFF": np.where(present["fALFF"][:, None], rng.standard_normal((n, 8)), np.nan).astype(np.float32)}
    use = {name: np.logical_and.reduce([present[s] for s in needs]) for name, needs in analyses(["T1w", "fALFF"]).items()}
    latents = save_latents(tmp_path / "latents.npz", ["T1w", "fALFF"], z, present, use,
                           {"split": split, "label": np.array(["HC"] * n), "subject": ids, "sample": ids}, "ok", 3)
    return latents, store, tmp_path


def test_run_recovery_reads_the_factors_of_the_store_per_source(run):
    latents, store, tmp = run
    df = run_recovery(latents, store, tmp / "recovery" / "S" / "fold0.tsv", n_boot=100)
    assert (tmp / "recovery" / "S" / "fold0.tsv").is_file()
    assert set(df["factor"]) == set(FACTORS) and set(df["split"]) == {"test"} and (df["epoch"] == 3).all()
    r2 = df.set_index(["source", "factor"])["r2"]
    assert r2["T1w", "shared"] > 0.95 and r2["T1w", "private_T1w"] > 0.95
    assert r2["T1w", "private_fALFF"] < 0.1 and r2["T1w", "nuisance_head"] < 0.1
    assert (df[df["source"] == "fALFF"]["r2"] < 0.1).all()
    n = df.groupby("source")["n"].first()
    assert n["fALFF"] < n["T1w"]  # fALFF's own rows: the subjects having it
    assert (df["ci_low"] <= df["r2"]).all() and (df["r2"] <= df["ci_high"]).all()
    # the table: one column per method, random first
    run_recovery(latents, store, tmp / "recovery" / "random" / "fold0.tsv", n_boot=10)
    run_recovery(latents, store, tmp / "recovery" / "S" / "fold1.tsv", n_boot=10)
    text = recovery_table(sorted((tmp / "recovery").glob("*/fold*.tsv")), tmp / "recovery.md")
    header = [line for line in text.splitlines() if line.startswith("| source")][0]
    assert header.split("|")[5:7] == [" random ", " S "]
    assert "| T1w | shared | shared |" in text and " ± 0.00" in text


def test_a_store_without_factors_is_refused(run):
    latents, store, tmp = run
    index = pd.read_csv(store / "index.tsv", sep="\t")
    index.drop(columns=FACTORS).to_csv(store / "index.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match="no generating factors"):
        run_recovery(latents, store, tmp / "out.tsv")


def test_recovery_is_planned_for_datasets_with_known_factors_only(tmp_path):
    root = ROOT
    config = tmp_path / "config.yaml"
    config.write_text("methods: [random, S]\ndatasets:\n  known:\n    kind: synthetic_mri\n    n_subjects: 100\n"
                      "    splits: {n_folds: 5, test: fold}\n    folds: [0, 1]\n    maps: {enabled: false}\n"
                      "  digits: {kind: two_view_mnist, folds: [0]}\n")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(root / "Snakefile"), "--directory",
                           str(tmp_path), "--cores", "1", f"--configfile={config}"], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root / "workflow")})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    counts = job_counts(proc.stdout)
    assert counts["recovery"] == 2 * 2 and counts["recovery_table"] == 1  # methods x folds of `known`, not the digits
    assert "results/known/recovery.md" in proc.stdout and "results/digits/recovery" not in proc.stdout
