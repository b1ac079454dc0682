"""Linear CKA and SVCCA against known values and naive slow references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ortho_group

from mmssl.evaluate.latents import load_latents
from mmssl.evaluate.similarity import SVCCAResult, linear_cka, svcca, svcca_shortfall
from mmssl.evaluate.steps import run_similarity
from mmssl.settings import schema_default

KEEP = schema_default("similarity", "svcca_keep")  # the variance SVCCA keeps when the config says nothing


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _naive_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA through HSIC with explicit N x N Gram and centring matrices (Kornblith eq. 4)."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T

    def hsic(a: np.ndarray, b: np.ndarray) -> float:
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def _inv_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return v @ np.diag(w**-0.5) @ v.T


def _naive_cca(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Canonical correlations as singular values of Cxx^-1/2 Cxy Cyy^-1/2 (whitening)."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    cxx, cyy, cxy = xc.T @ xc, yc.T @ yc, xc.T @ yc
    return np.linalg.svd(_inv_sqrt(cxx) @ cxy @ _inv_sqrt(cyy), compute_uv=False)


# ------------------------------------------------------------------ CKA


def test_cka_invariances(rng: np.random.Generator) -> None:
    x = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12))  # correlated features
    q = ortho_group.rvs(12, random_state=0)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-6)
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-6)
    assert linear_cka(x, 7.5 * x + 3.0) == pytest.approx(1.0, abs=1e-6)  # isotropic scale + shift


def test_cka_not_invariant_to_anisotropic_scaling(rng: np.random.Generator) -> None:
    """The property that separates CKA from CCA: stretching one axis changes CKA, not CCA."""
    x = rng.normal(size=(500, 8))
    y = x * np.array([1, 1, 1, 1, 1, 1, 1, 10.0])
    assert linear_cka(x, y) < 0.9
    assert svcca(x, y, keep=1.0).mean == pytest.approx(1.0, abs=1e-9)


def test_cka_independent_is_near_zero(rng: np.random.Generator) -> None:
    x, y = rng.normal(size=(5000, 16)), rng.normal(size=(5000, 16))
    assert linear_cka(x, y) < 0.05


def test_cka_matches_hsic_reference(rng: np.random.Generator) -> None:
    x = rng.normal(size=(150, 7))
    y = np.tanh(x @ rng.normal(size=(7, 5))) + 0.5 * rng.normal(size=(150, 5))
    ref = _naive_cka(x, y)
    assert 0.1 < ref < 0.99  # a non-trivial value, so the comparison means something
    assert linear_cka(x, y) == pytest.approx(ref, abs=1e-8)


def test_cka_float32_input_is_computed_in_float64(rng: np.random.Generator) -> None:
    x = rng.normal(size=(400, 6)) + 1e3  # large offset: centring in float32 would lose digits
    y = x @ rng.normal(size=(6, 6))
    assert linear_cka(x.astype(np.float32), y.astype(np.float32)) == pytest.approx(_naive_cka(x, y), abs=1e-4)


# ------------------------------------------------------------------ SVCCA


def test_svcca_invariances(rng: np.random.Generator) -> None:
    x = rng.normal(size=(400, 10))
    q = ortho_group.rvs(10, random_state=1)
    a = rng.normal(size=(10, 10)) + 3 * np.eye(10)  # invertible, far from orthogonal
    assert svcca(x, x, KEEP).mean == pytest.approx(1.0, abs=1e-9)
    assert svcca(x, x @ q, KEEP).mean == pytest.approx(1.0, abs=1e-9)
    assert svcca(x, x @ a, keep=1.0).mean == pytest.approx(1.0, abs=1e-9)


def test_svcca_independent_is_near_zero(rng: np.random.Generator) -> None:
    res = svcca(rng.normal(size=(20000, 8)), rng.normal(size=(20000, 8)), KEEP)
    assert res.mean < 0.03


@pytest.mark.parametrize("mix", ["axes", "rotated"])
def test_svcca_recovers_known_canonical_correlations(rng: np.random.Generator, mix: str) -> None:
    """y_i = rho_i s_i + sqrt(1 - rho_i^2) e_i with independent unit factors: the population
    canonical correlations are exactly rho, whatever orthogonal mixing hides the axes."""
    n, rho = 20000, np.array([0.9, 0.5, 0.1])
    s = rng.normal(size=(n, 3))
    y = rho * s + np.sqrt(1 - rho**2) * rng.normal(size=(n, 3))
    x = s
    if mix == "rotated":
        x, y = s @ ortho_group.rvs(3, random_state=2), y @ ortho_group.rvs(3, random_state=3)
    res = svcca(x, y, KEEP)
    assert (res.kept_x, res.kept_y) == (3, 3)  # equal variances: 99 % needs all three
    np.testing.assert_allclose(res.correlations, rho, atol=0.03)
    assert res.mean == pytest.approx(rho.mean(), abs=0.02)


def test_svcca_matches_whitening_reference(rng: np.random.Generator) -> None:
    x = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    y = np.hstack([x[:, :2] @ rng.normal(size=(2, 2)), rng.normal(size=(300, 2))]) + 0.3 * rng.normal(size=(300, 4))
    ref = _naive_cca(x, y)
    res = svcca(x, y, keep=1.0)
    assert len(res.correlations) == 4
    np.testing.assert_allclose(res.correlations, ref, atol=1e-8)


def test_svcca_keeps_fewest_directions_for_the_variance(rng: np.random.Generator) -> None:
    """Two strong directions carry > 99 % of the variance; four weak ones are dropped, so
    the independent noise in them cannot enter the correlation."""
    signal = rng.normal(size=(2000, 2))
    x = np.hstack([10 * signal, 0.1 * rng.normal(size=(2000, 4))])
    y = np.hstack([signal @ rng.normal(size=(2, 2)) * 10, 0.1 * rng.normal(size=(2000, 4))])
    res = svcca(x, y, KEEP)
    assert (res.kept_x, res.kept_y) == (2, 2)
    assert res.mean == pytest.approx(1.0, abs=1e-3)
    assert svcca(x, y, keep=1.0).mean < 0.5  # with the noise directions it drops


def test_rank_deficient_directions_are_not_kept(rng: np.random.Generator) -> None:
    x = rng.normal(size=(100, 3)) @ rng.normal(size=(3, 8))  # rank 3 in 8 columns
    assert svcca(x, x, keep=1.0).kept_x == 3


@pytest.mark.parametrize("fn", [linear_cka, lambda x, y: svcca(x, y, KEEP)], ids=["linear_cka", "svcca"])
def test_bad_input_raises_naming_shapes(fn) -> None:
    with pytest.raises(ValueError, match=r"\(10, 3\).*\(11, 3\)"):
        fn(np.zeros((10, 3)), np.zeros((11, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        fn(np.ones((1, 3)), np.ones((1, 3)))
    bad = np.random.default_rng(0).normal(size=(10, 3))
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        fn(bad, np.ones((10, 3)))


def test_constant_representation_gives_nan(rng: np.random.Generator) -> None:
    x = rng.normal(size=(50, 4))
    assert np.isnan(linear_cka(x, np.ones((50, 4))))
    assert np.isnan(svcca(x, np.ones((50, 4)), KEEP).mean)


# ------------------------------------------------------------------ the similarity command


def test_run_similarity_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    split = np.array(["train"] * 100 + ["test"] * 400)
    za = rng.normal(size=(500, 8)).astype(np.float32)
    np.savez(
        tmp_path / "lat.npz",
        sources=np.array(["t1", "copy", "noise"]),
        z__t1=za,
        z__copy=za.copy(),
        z__noise=rng.normal(size=(500, 8)).astype(np.float32),
        split=split,
        label=rng.integers(0, 2, 500),
        subject=np.array([f"s{i}" for i in range(500)]),
    )
    out = tmp_path / "sim" / "similarity.tsv"
    df = run_similarity(tmp_path / "lat.npz", out, {"svcca_keep": 0.99})
    read = pd.read_csv(out, sep="\t")
    assert list(read.columns) == ["source_a", "source_b", "split", "n", "epoch", "cka", "svcca", "svcca_kept_a",
                                  "svcca_kept_b", "note", "status"]
    assert read["note"].isna().all() and read["epoch"].isna().all()  # 400 >= 5 x 8 dims; no epoch in these latents
    assert list(zip(read.source_a, read.source_b)) == [("t1", "copy"), ("t1", "noise"), ("copy", "noise")]
    assert (read["split"] == "test").all() and (read["n"] == 400).all()
    pair = read.set_index(["source_a", "source_b"])
    assert pair.loc[("t1", "copy"), "cka"] == pytest.approx(1.0, abs=1e-6)
    assert pair.loc[("t1", "copy"), "svcca"] == pytest.approx(1.0, abs=1e-6)
    assert pair.loc[("t1", "noise"), "cka"] < 0.1 and pair.loc[("t1", "noise"), "svcca"] < 0.2
    assert pair.loc[("t1", "noise"), "cka"] == pytest.approx(pair.loc[("copy", "noise"), "cka"])
    np.testing.assert_allclose(read["cka"], df["cka"])
    with pytest.raises(ValueError, match=r"no rows in split 'holdout'"):
        run_similarity(tmp_path / "lat.npz", out, {"split": "holdout"})
    with pytest.raises(ValueError, match=r"similarity: .*'keep' was unexpected.*allowed keys: split, svcca_keep"):
        run_similarity(tmp_path / "lat.npz", out, {"keep": 0.9})


def test_latents_file_errors_name_the_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", sources=np.array(["a", "b"]), z__a=np.zeros((3, 2)), split=np.array(["train"] * 3),
             label=np.zeros(3), subject=np.array(["x", "y", "z"]))
    with pytest.raises(ValueError, match=r"bad.npz lists source 'b' but has no key 'z__b'"):
        load_latents(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad2.npz", sources=np.array(["a"]), z__a=np.zeros((3, 2)), split=np.array(["train", "dev", "test"]),
             label=np.zeros(3), subject=np.array(["x", "y", "z"]))
    with pytest.raises(ValueError, match=r"unknown split name\(s\) \['dev'\]"):
        load_latents(tmp_path / "bad2.npz")


def test_svcca_needs_five_samples_per_kept_dimension() -> None:
    assert svcca_shortfall(60, SVCCAResult(0.9, np.ones(3), 12, 3)) is None  # 60 = 5 x 12: reported
    assert svcca_shortfall(59, SVCCAResult(0.9, np.ones(3), 3, 12)) == "svcca n/a: 59 samples < 5 x 12 kept dims"
    assert svcca_shortfall(2, SVCCAResult(float("nan"), np.empty(0), 0, 3)) is None  # NaN already: no reason needed


def test_run_similarity_small_eval_set_reports_cka_but_not_svcca(tmp_path: Path) -> None:
    """4 test subjects (the synthetic MRI demo): every SVCCA read 1.000 there. Now it is
    NaN with the reason in ``note``; CKA is unaffected; ``epoch`` comes from the latents."""
    rng = np.random.default_rng(6)
    za, zb = rng.normal(size=(24, 8)), rng.normal(size=(24, 8))
    np.savez(tmp_path / "lat.npz", sources=np.array(["a", "b"]), z__a=za, z__b=zb,
             split=np.array(["train"] * 20 + ["test"] * 4), label=np.zeros(24, int),
             subject=np.array([f"s{i}" for i in range(24)]), epoch=np.array(17))
    assert svcca(za[20:], zb[20:], 0.99).mean == pytest.approx(1.0)  # what used to be reported
    df = run_similarity(tmp_path / "lat.npz", tmp_path / "sim.tsv", {"svcca_keep": 0.99})
    read = pd.read_csv(tmp_path / "sim.tsv", sep="\t")
    row = read.iloc[0]
    assert np.isnan(row["svcca"]) and row["cka"] == pytest.approx(linear_cka(za[20:], zb[20:]))
    assert row["note"] == "svcca n/a: 4 samples < 5 x 3 kept dims"  # 4 centred samples span 3 dims
    assert (row["n"], row["epoch"], row["svcca_kept_a"], row["svcca_kept_b"]) == (4, 17, 3, 3)
    assert df["note"].tolist() == ["svcca n/a: 4 samples < 5 x 3 kept dims"]
