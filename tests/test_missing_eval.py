"""Evaluation when samples lack a source (issue 14, item 4): ``embed`` encodes a source
only on the samples having it (its z elsewhere is NaN); the probe of a source uses exactly
the samples having it (one per subject: each subject's first sample having it); the
similarity of a pair the samples having both; a source too few samples have gives n/a
rows, not a crash; and a store where every sample has every source gives, to the bit,
what the code gave before samples could lack one."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import mmssl.evaluate.embed as embed_module
from mmssl.data.splits import SPLITS as DATA_SPLITS
from mmssl.data.store import read_store, write_store
from mmssl.evaluate.commands import run_probe, run_similarity
from mmssl.evaluate.embed import embed
from mmssl.evaluate.latents import SPLITS, load_latents
from mmssl.evaluate.probe import LinearProbeSettings, linear_probe
from mmssl.evaluate.similarity import linear_cka, svcca, svcca_shortfall
from mmssl.objectives import build_method
from mmssl.objectives.base import ModelSettings
from mmssl.objectives.model_file import model_meta, save_model
from mmssl.types import SourceSpec

SOURCES = [SourceSpec("t1", 1, 4), SourceSpec("fmri", 1, 4)]
N_SUBJECTS = 30
LOGREG = {"kind": "logreg"}
META = {"status": "ok", "model_settings": {"latent": 8}, "epochs": 3}


def subject_of(row: int) -> int:
    """Store row i (0..59) is sample p{i:02d} of subject s{i % 30}: each subject's two
    samples are rows s and s + 30, interleaved with the others'."""
    return row % N_SUBJECTS


def default_presence(row: int) -> tuple[bool, bool]:
    """(has t1, has fmri) of store row ``row``. Subjects 0-9: both samples have both;
    10-19: the first lacks fmri; 20-24: no fmri at all; 25-27: the first lacks t1;
    28-29: the first lacks t1, the second fmri (so no sample has both)."""
    s, first = subject_of(row), row < N_SUBJECTS
    has_t1 = not (s >= 25 and first)
    has_fmri = not ((10 <= s < 20 and first) or 20 <= s < 25 or (s >= 28 and not first))
    return has_t1, has_fmri


def split_of(subject: int) -> str:
    return {0: "train", 1: "train", 2: "val", 3: "test", 4: "test"}[subject % 5]


def make_toy(root: Path, presence=default_presence, complete: bool = False) -> Path:
    """A store of 60 samples (1x4x4 images: noise plus 0.3 x label, and the store row + 1
    in the last pixel, so a model can tell which row it was given; zeros where a sample
    lacks the source) and its fold0.tsv. complete: no has_ columns (every sample has both)."""
    rng = np.random.default_rng(0)
    n = 2 * N_SUBJECTS
    label = np.array([subject_of(i) % 2 for i in range(n)])
    index = pd.DataFrame({"sample": [f"p{i:02d}" for i in range(n)], "subject": [f"s{subject_of(i):02d}" for i in range(n)],
                          "label": label})
    marks = np.array([(True, True) if complete else presence(i) for i in range(n)])
    arrays = {}
    for k, spec in enumerate(SOURCES):
        a = rng.random((n, 1, 4, 4)).astype(np.float32) + 0.3 * label[:, None, None, None].astype(np.float32)
        a[:, 0, 3, 3] = np.arange(n) + 1
        a[~marks[:, k]] = 0.0
        arrays[spec.name] = a
        if not complete:
            index[f"has_{spec.name}"] = marks[:, k].astype(int)
    write_store(root / "store", index, arrays, SOURCES)
    pd.DataFrame({"subject": [f"s{s:02d}" for s in range(N_SUBJECTS)], "label": [s % 2 for s in range(N_SUBJECTS)],
                  "split": [split_of(s) for s in range(N_SUBJECTS)]}).to_csv(root / "fold0.tsv", sep="\t", index=False)
    return root


class Recorder(torch.nn.Module):
    """A stand-in model whose embed records the store rows it is given (from the last
    pixel; -1 for a zero array) and returns the first 8 pixels (negated for fmri)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, list[int]] = {s.name: [] for s in SOURCES}

    def embed(self, x: torch.Tensor, source: str) -> torch.Tensor:
        self.seen[source] += (x[:, 0, 3, 3].round().long() - 1).tolist()
        return self.fake_z(x.numpy(), source)

    @staticmethod
    def fake_z(x: np.ndarray, source: str) -> torch.Tensor:
        """(B, 1, 4, 4) -> (B, 8): what embed returns, also for the naive references."""
        return torch.from_numpy(np.asarray(x).reshape(len(x), -1)[:, :8] * (1.0 if source == "t1" else -1.0))


def embed_with(root: Path, one: bool, monkeypatch: pytest.MonkeyPatch, name: str = "lat.npz") -> tuple[Path, Recorder]:
    """``embed`` of the toy store with a :class:`Recorder` in place of a trained model."""
    recorder = Recorder()
    monkeypatch.setattr(embed_module, "load_model", lambda path, device: (recorder, META))
    out = root / name
    embed(root / "store", root / "fold0.tsv", root / "model.pt", out, one_per_subject=one, device="cpu")
    return out, recorder


def naive_rows(root: Path, one: bool, needs: tuple[str, ...]) -> list[int]:
    """Store rows an analysis needing ``needs`` should use, by plain loops: the samples of
    the fold's subjects having every source in ``needs``; with ``one``, each subject's first."""
    store = read_store(root / "store")
    rows = []
    for s in range(N_SUBJECTS):
        having = [i for i in sorted(store.index["row"]) if subject_of(i) == s
                  and all(store.present(k)[i] for k in needs)]
        rows += having[:1] if one else having
    return sorted(rows)


def store_rows(lat: dict[str, np.ndarray]) -> np.ndarray:
    return np.array([int(s[1:]) for s in lat["sample"]])


def read(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# ------------------------------------------------------------------ embed


@pytest.mark.parametrize("one", [False, True], ids=["all-samples", "one-per-subject"])
def test_embed_encodes_only_present_rows_and_marks_each_analysis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 one: bool) -> None:
    root = make_toy(tmp_path)
    path, recorder = embed_with(root, one, monkeypatch)
    lat, store = read(path), read_store(root / "store")
    rows = store_rows(lat)
    assert rows.tolist() == sorted(rows.tolist())  # store order
    for name in ("t1", "fmri"):
        present = lat[f"present__{name}"]
        assert present.dtype == bool and present.tolist() == store.present(name)[rows].tolist()
        # the model saw exactly the file's rows having the source, once each, and never a zero array
        assert -1 not in recorder.seen[name]
        assert recorder.seen[name] == rows[present].tolist()
        z = lat[f"z__{name}"]
        assert np.isnan(z[~present]).all() and np.isfinite(z[present]).all()
        np.testing.assert_array_equal(z[present], Recorder.fake_z(store.arrays[name][rows[present]], name).numpy())
    # each analysis's rows, against plain loops
    for key, needs in (("t1", ("t1",)), ("fmri", ("fmri",)), ("t1~fmri", ("t1", "fmri"))):
        assert rows[lat[f"use__{key}"]].tolist() == naive_rows(root, one, needs), key
    union = set().union(*(naive_rows(root, one, needs) for needs in (("t1",), ("fmri",), ("t1", "fmri"))))
    assert rows.tolist() == sorted(union)
    if one:  # the choices differ per source: subject 10's t1 is its first sample, its fmri (and pair) its second
        assert (10 in rows[lat["use__t1"]]) and (40 in rows[lat["use__fmri"]]) and (40 in rows[lat["use__t1~fmri"]])
        assert 10 not in rows[lat["use__fmri"]] and 40 not in rows[lat["use__t1"]]
        # subject 25: fmri from its first sample (which lacks t1), t1 and the pair from its second
        assert 25 in rows[lat["use__fmri"]] and 55 in rows[lat["use__t1"]] and 55 in rows[lat["use__t1~fmri"]]
        assert len(rows) == len(set(rows)) and sorted(set(lat["subject"][lat["use__fmri"]])) == \
            sorted({f"s{s:02d}" for s in range(N_SUBJECTS) if not 20 <= s < 25})
    else:
        assert len(rows) == 2 * N_SUBJECTS  # every sample has some source


def test_latents_without_the_masks_read_as_all_present_and_a_mask_over_absent_rows_is_refused(tmp_path: Path) -> None:
    n = 4
    old = dict(sources=np.array(["a", "b"]), z__a=np.ones((n, 2)), z__b=np.ones((n, 2)), split=np.array(["test"] * n),
               label=np.zeros(n, int), subject=np.array(list("wxyz")))
    np.savez(tmp_path / "old.npz", **old)
    data = load_latents(tmp_path / "old.npz")
    assert sorted(data["use"]) == ["a", "a~b", "b"] and all(m.tolist() == [True] * n for m in data["use"].values())
    assert all(m.tolist() == [True] * n for m in data["present"].values())
    lacking = np.array([True, True, False, True])
    np.savez(tmp_path / "bad.npz", **old, present__b=lacking, use__b=np.ones(n, bool))
    with pytest.raises(ValueError, match=r"use__b takes 1 rows lacking one of \['b'\]"):
        load_latents(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad2.npz", **old, present__b=lacking, use__b=lacking)  # b fine, but the pair uses row 2
    with pytest.raises(ValueError, match=r"use__a~b takes 1 rows lacking one of \['a', 'b'\]"):
        load_latents(tmp_path / "bad2.npz")
    assert SPLITS == DATA_SPLITS  # the latents reader's copy of the split names


# ------------------------------------------------------------------ probe and similarity


def naive_z(root: Path, rows: list[int], source: str) -> np.ndarray:
    return Recorder.fake_z(read_store(root / "store").arrays[source][rows], source).numpy()


def naive_probe(root: Path, source: str) -> dict:
    """The multi-class probe of ``source`` on the naive one-per-subject rows having it."""
    rows = naive_rows(root, True, (source,))
    z, label = naive_z(root, rows, source), np.array([subject_of(i) % 2 for i in rows])
    split = np.array([split_of(subject_of(i)) for i in rows])
    parts = {s: (z[split == s], label[split == s]) for s in ("train", "val", "test")}
    return linear_probe(*parts["train"], *parts["val"], {"test": parts["test"]}, LinearProbeSettings.from_config(LOGREG))[0]


def test_probe_of_each_source_uses_exactly_the_subjects_having_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_toy(tmp_path)
    path, _ = embed_with(root, True, monkeypatch)
    df = run_probe(path, tmp_path / "probe.tsv", LOGREG, "multiclass").set_index("source")
    test_subjects = [s for s in range(N_SUBJECTS) if split_of(s) == "test"]
    # every subject has t1 in some sample; subjects 20-24 have no fmri (23, 24 are test subjects)
    assert df.loc["t1", "n"] == len(test_subjects) == 12
    assert df.loc["fmri", "n"] == len([s for s in test_subjects if not 20 <= s < 25]) == 10
    for source in ("t1", "fmri"):  # the same numbers as the probe on the naive rows: the same train and val too
        expected = naive_probe(root, source)
        got = df.loc[source]
        assert (got["accuracy"], got["ci_low"], got["ci_high"], got["val_accuracy"], got["hyperparameter"]) == \
            (expected["accuracy"], expected["ci_low"], expected["ci_high"], expected["val_accuracy"],
             expected["hyperparameter"])
    assert (df["note"] == "").all() and (df["status"] == "ok").all()
    back = pd.read_csv(tmp_path / "probe.tsv", sep="\t")
    assert back["n"].tolist() == [12, 10] and back["note"].isna().all()


def test_similarity_uses_the_samples_having_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_toy(tmp_path)
    path, _ = embed_with(root, True, monkeypatch)
    row = run_similarity(path, tmp_path / "sim.tsv", {"svcca_keep": 0.99}).iloc[0]
    # test subjects with a sample having both: not 23, 24 (no fmri) nor 28, 29 (never both in one sample)
    rows = [i for i in naive_rows(root, True, ("t1", "fmri")) if split_of(subject_of(i)) == "test"]
    assert row["n"] == len(rows) == 8 and {subject_of(i) for i in rows}.isdisjoint({23, 24, 28, 29})
    za, zb = naive_z(root, rows, "t1"), naive_z(root, rows, "fmri")  # both from the same sample
    cca = svcca(za, zb, 0.99)
    assert row["cka"] == linear_cka(za, zb)
    assert (row["svcca_kept_a"], row["svcca_kept_b"]) == (cca.kept_x, cca.kept_y)
    assert row["note"] == (svcca_shortfall(8, cca) or "")


def too_few(case: str):
    """Presence where fmri is too rare in one split: 'no-val' (no val subject has it),
    'no-test' (no test subject has it), 'one-class-test' (only label-0 test subjects have it)."""
    def presence(row: int) -> tuple[bool, bool]:
        s = subject_of(row)
        gone = {"no-val": split_of(s) == "val", "no-test": split_of(s) == "test",
                "one-class-test": split_of(s) == "test" and s % 2 == 1}[case]
        return True, not gone
    return presence


@pytest.mark.parametrize(("case", "task", "note", "n_test"), [
    ("no-val", "multiclass", "accuracy n/a: fmri: no val samples", 12),
    ("no-test", "multiclass", "accuracy n/a: fmri: no test samples", 0),
    ("one-class-test", "binary", "roc_auc n/a: fmri: the test samples hold one class {0: 6}", 6),
])
def test_a_source_too_few_have_gives_na_rows_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str,
                                                         task: str, note: str, n_test: int) -> None:
    root = make_toy(tmp_path, too_few(case))
    path, _ = embed_with(root, True, monkeypatch)
    settings = LOGREG if task == "multiclass" else {"n_trials": 2}
    df = run_probe(path, tmp_path / "probe.tsv", settings, task)
    metric = "accuracy" if task == "multiclass" else "roc_auc"
    assert df["source"].tolist() == ["t1", "fmri"] and (df["status"] == "ok").all()
    t1, fmri = df.iloc[0], df.iloc[1]
    assert np.isfinite(t1[metric]) and t1["n"] == 12 and t1["note"] == ""
    assert np.isnan(fmri[[metric, "balanced_accuracy", "ci_low", "ci_high"]].astype(float)).all()
    assert (fmri["n"], fmri["note"]) == (n_test, note)
    assert list(pd.read_csv(tmp_path / "probe.tsv", sep="\t").columns) == list(df.columns)  # one schema for both kinds
    sim = run_similarity(path, tmp_path / "sim.tsv", {}).iloc[0]
    if case == "no-test":  # no test sample has both: CKA and SVCCA n/a, said so
        assert (sim["n"], sim["note"]) == (0, "cka n/a: 0 test samples have both t1 and fmri (need 2)")
        assert np.isnan(sim["cka"]) and np.isnan(sim["svcca"]) and sim["status"] == "ok"
        assert pd.read_csv(tmp_path / "sim.tsv", sep="\t")["svcca_kept_a"].isna().all()
    else:
        assert sim["n"] == n_test and np.isfinite(sim["cka"])


# ------------------------------------------------------------------ complete stores: as before


def old_code_path(store_dir: Path, split_tsv: Path, model: torch.nn.Module, one: bool) -> tuple[pd.DataFrame, dict]:
    """What embed did before samples could lack a source: the split's subjects' rows (one
    per subject: the first), every source encoded on every row in batches of 256."""
    store = read_store(store_dir)
    split = pd.read_csv(split_tsv, sep="\t", dtype={"subject": str})
    rows = store.index.merge(split[["subject", "split"]], on="subject", how="inner")
    if one:
        rows = rows.sort_values("row").drop_duplicates("subject", keep="first")
    rows = rows.sort_values("row").reset_index(drop=True)
    r = rows["row"].to_numpy()
    with torch.no_grad():
        z = {name: np.concatenate([model.embed(torch.from_numpy(np.asarray(arr[r[i:i + 256]], dtype=np.float32)), name)
                                   .numpy() for i in range(0, len(r), 256)]) for name, arr in store.arrays.items()}
    return rows, z


@pytest.mark.parametrize("marked", [False, True], ids=["no-has-columns", "has-columns-all-1"])
def test_a_complete_store_gives_what_the_old_code_gave(tmp_path: Path, marked: bool) -> None:
    sources = [SourceSpec("a", 1, 16), SourceSpec("b", 1, 16)]
    rng = np.random.default_rng(1)
    n = 300  # 150 subjects x 2 samples: more than one batch of 256
    index = pd.DataFrame({"sample": [f"p{i}" for i in range(n)], "subject": [f"s{i % 150:03d}" for i in range(n)],
                          "label": [(i % 150) % 3 for i in range(n)]})
    if marked:
        index = index.assign(has_a=1, has_b=1)
    arrays = {s.name: rng.random((n, 1, 16, 16)).astype(np.float32) for s in sources}
    for s in sources:
        arrays[s.name][:, 0, 0, :4] += index["label"].to_numpy()[:, None]
    write_store(tmp_path / "store", index, arrays, sources)
    split = pd.DataFrame({"subject": [f"s{s:03d}" for s in range(150)], "label": [s % 3 for s in range(150)],
                          "split": [("train", "train", "val", "test", "test")[s % 5] for s in range(150)]})
    split.to_csv(tmp_path / "fold0.tsv", sep="\t", index=False)
    settings = ModelSettings.from_config({"width": 4, "latent": 8})
    model = build_method("CL", sources, settings).eval()
    meta = model_meta("CL", 2, "ok", 0, [asdict(s) for s in sources], asdict(settings), {}, "cpu")
    save_model(tmp_path / "model.pt", meta, model.state_dict())
    for one in (False, True):
        out = tmp_path / f"lat{int(one)}.npz"
        embed(tmp_path / "store", tmp_path / "fold0.tsv", tmp_path / "model.pt", out, one_per_subject=one, device="cpu")
        lat = read(out)
        rows, z = old_code_path(tmp_path / "store", tmp_path / "fold0.tsv", model, one)
        assert lat["sample"].tolist() == rows["sample"].tolist() and len(rows) == (150 if one else 300)
        for name in ("a", "b"):
            assert np.array_equal(lat[f"z__{name}"], z[name])  # to the bit
        assert all(lat[k].all() for k in lat if k.startswith(("use__", "present__")))
        # the probe and the similarity: the old code used every row of the latents
        probe = run_probe(out, tmp_path / "probe.tsv", LOGREG, "multiclass").set_index("source")
        split_col, label = rows["split"].to_numpy(), rows["label"].to_numpy()
        for name in ("a", "b"):
            parts = {s: (z[name][split_col == s], label[split_col == s]) for s in ("train", "val", "test")}
            old = linear_probe(*parts["train"], *parts["val"], {"test": parts["test"]},
                               LinearProbeSettings.from_config(LOGREG))[0]
            assert {k: probe.loc[name, k] for k in old} == old
        sim = run_similarity(out, tmp_path / "sim.tsv", {"svcca_keep": 0.99}).iloc[0]
        test = split_col == "test"
        cca = svcca(z["a"][test], z["b"][test], 0.99)
        assert (sim["n"], sim["cka"], sim["svcca_kept_a"], sim["svcca_kept_b"]) == \
            (test.sum(), linear_cka(z["a"][test], z["b"][test]), cca.kept_x, cca.kept_y)
        assert sim["svcca"] == cca.mean or (np.isnan(sim["svcca"]) and svcca_shortfall(int(test.sum()), cca))
