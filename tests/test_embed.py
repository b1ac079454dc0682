"""The embed step on a tiny store: one pair per subject (chosen here and only here), and
the empty latents of a diverged run. No training: the models are untrained encoders."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmssl.data.store import read_store, write_store
from mmssl.evaluate.embed import embed, evaluation_rows
from mmssl.evaluate.steps import run_probe, run_similarity
from mmssl.objectives import build_method
from mmssl.objectives.base import ModelSettings
from mmssl.objectives.model_file import model_meta, save_model
from mmssl.types import SourceSpec

SMALL = {"width": 4, "latent": 8}
SOURCES = [SourceSpec("a", 1, 16), SourceSpec("b", 1, 16)]
# store row -> (sample, subject, label): s1, s2, s3 have several pairs, interleaved; s4 is
# in no split of this fold
ROWS = [("p0", "s1", 0), ("p1", "s2", 1), ("p2", "s1", 0), ("p3", "s3", 1), ("p4", "s2", 1), ("p5", "s4", 0),
        ("p6", "s3", 1)]
SPLIT = pd.DataFrame({"subject": ["s1", "s2", "s3"], "label": [0, 1, 1], "split": ["train", "val", "test"]})


@pytest.fixture()
def toy(tmp_path: Path) -> Path:
    """A store of the 7 pairs above (random 1x16x16 images per source) and its fold0.tsv."""
    rng = np.random.default_rng(0)
    index = pd.DataFrame(ROWS, columns=["sample", "subject", "label"])
    arrays = {s.name: rng.random((len(ROWS), 1, 16, 16)).astype(np.float32) for s in SOURCES}
    write_store(tmp_path / "store", index, arrays, SOURCES)
    SPLIT.to_csv(tmp_path / "fold0.tsv", sep="\t", index=False)
    return tmp_path


def write_model(path: Path, status: str) -> torch.nn.Module:
    """model.pt as ``train`` writes it: an untrained 'random' method, or for status
    'diverged' no weights (what a run whose loss stayed NaN leaves)."""
    settings = ModelSettings.from_config(SMALL)
    model = build_method("random", SOURCES, settings)
    meta = model_meta("random", 0, status, 0, [asdict(s) for s in SOURCES], asdict(settings), {}, "cpu")
    save_model(path, meta, model.state_dict() if status == "ok" else None)
    return model.eval()


def read_latents(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:  # readable without pickle
        return {k: f[k] for k in f.files}


def test_one_pair_per_subject_is_each_subjects_first_pair(toy: Path) -> None:
    model = write_model(toy / "model.pt", "ok")
    embed(toy / "store", toy / "fold0.tsv", toy / "model.pt", toy / "one.npz", one_per_subject=True, device="cpu")
    one = read_latents(toy / "one.npz")
    assert one["sample"].tolist() == ["p0", "p1", "p3"]  # lowest store row of s1, s2, s3; s4 is in no split
    assert one["subject"].tolist() == ["s1", "s2", "s3"]
    assert one["split"].tolist() == ["train", "val", "test"] and one["label"].tolist() == [0, 1, 1]
    assert str(one["status"]) == "ok" and one["sources"].tolist() == ["a", "b"]
    assert int(one["epoch"]) == 0  # model.pt's meta has no selected_epoch: its epochs
    store = read_store(toy / "store")
    for name in ("a", "b"):  # the latents are those of exactly the chosen pairs
        expected = model.embed(torch.from_numpy(np.asarray(store.arrays[name][[0, 1, 3]])), name).numpy()
        assert one[f"z__{name}"].shape == (3, 8)
        np.testing.assert_allclose(one[f"z__{name}"], expected, rtol=1e-6)
    embed(toy / "store", toy / "fold0.tsv", toy / "model.pt", toy / "again.npz", one_per_subject=True, device="cpu")
    again = read_latents(toy / "again.npz")
    assert again.keys() == one.keys() and all(np.array_equal(again[k], one[k]) for k in one)
    embed(toy / "store", toy / "fold0.tsv", toy / "model.pt", toy / "all.npz", device="cpu")
    assert read_latents(toy / "all.npz")["sample"].tolist() == ["p0", "p1", "p2", "p3", "p4", "p6"]


@pytest.mark.parametrize("has_b", [None, [1, 1, 1, 0, 1, 1, 1]], ids=["complete", "p3-lacks-b"])
def test_the_choice_does_not_depend_on_the_index_order(has_b: list[int] | None) -> None:
    index = pd.DataFrame(ROWS, columns=["sample", "subject", "label"]).rename_axis("row").reset_index()
    if has_b is not None:
        index["has_b"] = has_b
    shuffled = index.sample(frac=1.0, random_state=3)
    for one in (True, False):
        pd.testing.assert_frame_equal(evaluation_rows(shuffled, SPLIT, one, ["a", "b"]),
                                      evaluation_rows(index, SPLIT, one, ["a", "b"]))
    rows = evaluation_rows(shuffled, SPLIT, True, ["a", "b"])
    if has_b is None:
        assert rows["row"].tolist() == [0, 1, 3]
        assert rows[["use__a", "use__b", "use__a~b"]].all().all()
    else:  # s3's first pair p3 lacks b: a's probe takes p3, b's probe and the a~b pair take p6
        assert rows["row"].tolist() == [0, 1, 3, 6]
        assert rows["use__a"].tolist() == [True, True, True, False]
        assert rows["use__b"].tolist() == rows["use__a~b"].tolist() == [True, True, False, True]
        assert rows["present__b"].tolist() == [True, True, False, True] and rows["present__a"].all()


def test_a_diverged_run_has_empty_latents_and_later_steps_say_diverged(toy: Path) -> None:
    write_model(toy / "model.pt", "diverged")
    embed(toy / "store", toy / "fold0.tsv", toy / "model.pt", toy / "lat.npz", one_per_subject=True, device="cpu")
    lat = read_latents(toy / "lat.npz")
    assert str(lat["status"]) == "diverged" and lat["sources"].tolist() == ["a", "b"]
    assert lat["z__a"].shape == lat["z__b"].shape == (0, 8)  # (N = 0, latent)
    assert all(len(lat[k]) == 0 for k in ("split", "label", "subject", "sample"))
    probe = run_probe(toy / "lat.npz", toy / "probe.tsv", {}, "multiclass")
    assert probe[["source", "split", "status"]].values.tolist() == [["a", "test", "diverged"], ["b", "test", "diverged"]]
    assert probe["accuracy"].isna().all()
    sim = run_similarity(toy / "lat.npz", toy / "sim.tsv", {})
    assert sim[["source_a", "source_b", "split", "status"]].values.tolist() == [["a", "b", "test", "diverged"]]
    assert sim[["cka", "svcca"]].isna().all().all()


@pytest.mark.parametrize(("extra", "expected"), [({}, 0), ({"selected_epoch": 7}, 7), ({"selected_epoch": None}, None)])
def test_latents_and_probe_rows_carry_the_models_chosen_epoch(toy: Path, extra: dict, expected: int | None) -> None:
    """selected_epoch when model.pt records it, else its epochs (0 here); empty when unknown."""
    settings = ModelSettings.from_config(SMALL)
    meta = {**model_meta("random", 0, "diverged", 0, [asdict(s) for s in SOURCES], asdict(settings), {}, "cpu"), **extra}
    save_model(toy / "model.pt", meta, None)
    embed(toy / "store", toy / "fold0.tsv", toy / "model.pt", toy / "lat.npz", device="cpu")
    lat = read_latents(toy / "lat.npz")
    assert (int(lat["epoch"]) if "epoch" in lat else None) == expected
    run_probe(toy / "lat.npz", toy / "probe.tsv", {}, "multiclass")
    run_similarity(toy / "lat.npz", toy / "sim.tsv", {})
    for name in ("probe.tsv", "sim.tsv"):  # as the report reads them back
        df = pd.read_csv(toy / name, sep="\t")
        assert df["epoch"].isna().all() if expected is None else (df["epoch"] == expected).all()


def test_evaluation_and_maps_do_not_import_training() -> None:
    """evaluate and maps come after train: they read model.pt through
    mmssl.objectives.model_file and choose the device with mmssl.device, never importing
    mmssl.train (imports inside functions count too)."""
    import ast

    package = Path(__file__).resolve().parents[1] / "workflow" / "mmssl"
    offences = []
    for path in sorted([*(package / "evaluate").rglob("*.py"), *(package / "maps").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offences += [f"{path.relative_to(package)}:{node.lineno}: {n}" for n in names
                         if n == "mmssl.train" or n.startswith("mmssl.train.")]
    assert offences == []
