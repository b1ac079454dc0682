"""The Snakemake workflow itself: DAG of the full grid, clear errors, one tiny real run."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from dryrun import job_counts  # noqa: E402


def snakemake(workdir, *args, config=None, check=True):
    # targets and options first: --configfile takes several values and would swallow them
    cmd = [sys.executable, "-m", "snakemake", *args, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "--configfile", str(config or ROOT / "config.yaml")]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def test_dry_run_of_the_full_paper_grid(tmp_path):
    """All 15 combinations + random, 5 folds: one train/embed/probe/similarity job each."""
    config = tmp_path / "grid.yaml"
    config.write_text("datasets:\n  two_view_mnist: {kind: two_view_mnist}\n")  # every default: all folds
    proc = snakemake(tmp_path, "-n", config=config)
    counts = job_counts(proc.stdout)
    assert counts["train"] == counts["probe"] == counts["similarity"] == counts["embed"] == 16 * 5
    assert counts["prepare_two_view"] == 1 and counts["splits"] == 5 and counts["report"] == 1


def test_one_fold_of_one_method_runs_only_its_chain(tmp_path):
    target = "results/two_view_mnist/probe/L-CL/fold2.tsv"
    counts = job_counts(snakemake(tmp_path, "-n", target).stdout)
    assert counts == {"embed": 1, "prepare_two_view": 1, "probe": 1, "splits": 1, "train": 1, "total": 5}


@pytest.mark.parametrize(
    "override,message",
    [
        ("train={'epoch': 3}", "train: Additional properties are not allowed ('epoch' was unexpected)"),
        ("model={'heads': 'mlp'}", "model.heads: 'mlp' is not allowed"),
        ("methods=['L', 'CL-L']", "unknown method 'CL-L'"),
    ],
)
def test_bad_config_stops_before_any_job_with_the_key_named(tmp_path, override, message):
    proc = snakemake(tmp_path, "-n", "--config", override, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "target,message",
    [
        ("results/two_view_mnist/probe/L-X/fold0.tsv", "unknown method 'L-X'"),
        ("results/two_view_mnist/probe/L/fold7.tsv", "fold 7 out of range"),
        ("results/nope/probe/L/fold0.tsv", "unknown dataset 'nope'"),
    ],
)
def test_bad_targets_are_explained(tmp_path, target, message):
    proc = snakemake(tmp_path, "-n", target, check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


@pytest.mark.slow
def test_tiny_real_run_through_the_report(tmp_path):
    snakemake(tmp_path, config=ROOT / ".test" / "config.yaml")
    res = tmp_path / "results" / "two_view_mnist"
    summary = pd.read_csv(res / "summary.tsv", sep="\t")
    assert list(summary.columns) == ["dataset", "method", "fold", "source", "split", "metric", "value", "status",
                                     "n", "ci_low", "ci_high", "epoch", "note"]
    acc = summary[(summary.metric == "accuracy") & (summary.split == "test")]
    assert set(acc.method) == {"random", "L-S"} and set(acc.source) == {"view1", "view2"}
    assert acc.value.between(0.3, 1.0).all()  # 10 classes: chance is 0.1; real digits are easy
    cka = summary[summary.metric == "cka"]
    assert set(cka.source) == {"view1~view2"} and cka.value.between(0, 1).all()
    table = (res / "table.md").read_text()
    assert "| L-S | 1 |" in table and "| random (floor) | 1 |" in table  # the floor row comes first
    assert table.index("| random (floor) |") < table.index("| L-S |")
    assert acc[["ci_low", "ci_high"]].notna().all().all() and (acc.ci_low <= acc.value).all()
    assert (res / "figure.png").stat().st_size > 10_000
    metrics = pd.read_csv(res / "models" / "L-S" / "fold0" / "metrics.tsv", sep="\t")
    assert metrics["epoch"].tolist() == [1] and metrics["samples_per_s"].iloc[0] > 0
    # every step logged, every step benchmarked
    assert (res / "logs" / "train" / "L-S" / "fold0.log").exists()
    assert (res / "benchmarks" / "train" / "L-S" / "fold0.tsv").exists()
    # nothing to do on a second run; the HTML report embeds table and figure
    assert "Nothing to be done" in snakemake(tmp_path, config=ROOT / ".test" / "config.yaml").stderr
    snakemake(tmp_path, "--report", "report.html", config=ROOT / ".test" / "config.yaml")
    html = (tmp_path / "report.html").read_text(errors="ignore")
    assert "table.md" in html and "figure.png" in html


def write_tiny_mnist_svhn(root: Path, n: int = 120) -> None:
    """MNIST IDX files and SVHN .mat files in their real layouts, 10 classes."""
    import numpy as np
    import scipy.io

    from mmssl.data.mnist import write_idx

    rng = np.random.default_rng(0)
    (root / "mnist").mkdir(parents=True)
    (root / "svhn").mkdir(parents=True)
    for pool, count in (("train", n), ("t10k", n // 2)):
        labels = np.arange(count) % 10
        write_idx(root / "mnist" / f"{pool}-images-idx3-ubyte.gz", (labels[:, None, None] * 25 + rng.integers(0, 5, (count, 28, 28))))
        write_idx(root / "mnist" / f"{pool}-labels-idx1-ubyte.gz", labels)
    for pool, count in (("train", n), ("test", n // 2)):
        labels = np.arange(count) % 10
        x = (labels[None, None, None, :] * 25 + rng.integers(0, 5, (32, 32, 3, count))).astype(np.uint8)
        scipy.io.savemat(root / "svhn" / f"{pool}_32x32.mat", {"X": x, "y": np.where(labels == 0, 10, labels)[:, None]})


@pytest.mark.slow
def test_mnist_svhn_baselines_and_a_diverging_run_do_not_stop_the_grid(tmp_path):
    """Real file formats through the whole chain; a run forced to NaN is reported as
    'diverged' while every other job finishes."""
    write_tiny_mnist_svhn(tmp_path / "raw")
    common = (f"kind: mnist_svhn, mnist_path: {tmp_path}/raw/mnist, svhn_path: {tmp_path}/raw/svhn, per_mnist: 2, "
              "splits: {n_folds: 2}, folds: [0]")
    config = tmp_path / "config.yaml"
    config.write_text(
        "train: {epochs: 1, batch_size: 16}\n"
        "probe: {multiclass: {epochs: 2, weight_decays: [0.0]}}\n"
        "model: {width: 4, extra: {mmvae_k: 2, cca_k: 4}}\n"
        "datasets:\n"
        f"  mnist_svhn: {{{common}, methods: [S, AE, MMVAE]}}\n"
        f"  mnist_svhn_nan: {{{common}, methods: [S], train: {{lr: 1.0e+30, scheduler: none}}}}\n"
    )
    snakemake(tmp_path, config=config)
    ok = pd.read_csv(tmp_path / "results" / "mnist_svhn" / "summary.tsv", sep="\t")
    assert set(ok.method) == {"S", "AE", "MMVAE"} and set(ok.status) == {"ok"}
    assert set(ok[ok.metric == "accuracy"].source) == {"mnist", "svhn"}
    bad = pd.read_csv(tmp_path / "results" / "mnist_svhn_nan" / "summary.tsv", sep="\t")
    assert set(bad.status) == {"diverged"}
    assert "| S | 1 | diverged |" in (tmp_path / "results" / "mnist_svhn_nan" / "table.md").read_text()
    log = (tmp_path / "results" / "mnist_svhn_nan" / "logs" / "train" / "S" / "fold0.log").read_text()
    assert "lowered the learning rate" in log and "marking the run as diverged" in log


# --- brain MRI -----------------------------------------------------------------------

CLINICAL = "OASISID,days_to_visit,age at visit,CDRTOT,dx1,M/F\n"


def zero_byte_bids(root: Path, variant: str) -> tuple[Path, dict[str, int]]:
    """An OASIS-3-shaped BIDS tree of empty files; returns (clinical csv, the number of
    scans of each raw suffix that discovery should put in samples: every scan of a subject
    with a matched visit). Six subjects with two sessions of T1w, T2w and BOLD (FLAIR in
    the first), one with a T1w only, one with a BOLD run only, one with nothing usable."""
    rows = []
    counts = {"T1w": 0, "T2w": 0, "FLAIR": 0, "bold": 0}

    def scan(sub, ses, kind, name):
        folder = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / kind
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).touch()
        if name.endswith("_bold.nii.gz"):
            (folder / name.replace(".nii.gz", ".json")).write_text('{"RepetitionTime": 2.2}')
        suffix = name.removesuffix(".nii.gz").rpartition("_")[2]
        if "task-nback" not in name:
            counts[suffix] += 1

    ses_a, ses_b = ("M000", "M012") if variant == "clinica" else ("d0100", "d0465")
    days_a, days_b = (0, 365) if variant == "clinica" else (100, 465)
    for i, (dx, cdr) in enumerate([("Cognitively normal", 0)] * 3 + [("AD Dementia", 1)] * 3):
        sub = f"OAS3{i:04d}"
        for ses, days in ((ses_a, days_a), (ses_b, days_b)):
            pre = f"sub-{sub}_ses-{ses}"
            scan(sub, ses, "anat", f"{pre}_run-01_T1w.nii.gz")
            if variant == "multirun":
                scan(sub, ses, "anat", f"{pre}_run-02_T1w.nii.gz")
            scan(sub, ses, "anat", f"{pre}_run-01_T2w.nii.gz")
            if ses == ses_a:
                scan(sub, ses, "anat", f"{pre}_run-01_FLAIR.nii.gz")
            scan(sub, ses, "func", f"{pre}_task-rest_run-01_bold.nii.gz")
            if variant == "session_description":
                (root / f"sub-{sub}" / f"ses-{ses}" / "dataset_description.json").write_text('{"Name": "x"}')
            rows.append(f"{sub},{days},70,{cdr},{dx},F")
    # single modality: a T1w only, a BOLD run only (samples with the other source empty)
    scan("OAS39999", ses_a, "anat", f"sub-OAS39999_ses-{ses_a}_run-01_T1w.nii.gz")
    scan("OAS39998", ses_a, "func", f"sub-OAS39998_ses-{ses_a}_task-rest_run-01_bold.nii.gz")
    # nothing usable: excluded at discovery
    scan("OAS39997", ses_a, "func", f"sub-OAS39997_ses-{ses_a}_task-nback_run-01_bold.nii.gz")
    rows += [f"{s},{days_a},70,0,Cognitively normal,M" for s in ("OAS39999", "OAS39998", "OAS39997")]
    if variant != "session_description":
        (root / "dataset_description.json").write_text('{"Name": "zero", "BIDSVersion": "1.8.0"}')
    clinical = root.parent / "clinical.csv"
    clinical.write_text(CLINICAL + "\n".join(rows) + "\n")
    return clinical, counts


def bids_config(tmp_path: Path, clinical: Path, sources: str = "") -> Path:
    """A config of the zero-byte tree as dataset oasis (2 folds, method S)."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "methods: [S]\n"
        f"datasets:\n  oasis:\n    kind: bids_mri\n    bids_dir: {tmp_path}/bids\n    clinical_csv: {clinical}\n"
        "    splits: {n_folds: 2, test: fold}\n" + (f"    sources: {sources}\n" if sources else "")
    )
    return config


@pytest.mark.parametrize("variant", ["oasis", "multirun", "clinica", "session_description"])
def test_zero_byte_bids_trees_plan_one_job_per_scan(tmp_path, variant):
    """As BIDS apps test their DAGs: discovery runs on empty files (names only), then the
    dry run plans one preprocessing job per T1w and per BOLD run (the default sources
    T1w, fALFF: no T2w or FLAIR job), the single-modality subjects' included."""
    clinical, counts = zero_byte_bids(tmp_path / "bids", variant)
    config = bids_config(tmp_path, clinical)
    snakemake(tmp_path, "results/oasis/samples.tsv", config=config)
    samples = pd.read_csv(tmp_path / "results" / "oasis" / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert samples["subject"].nunique() == 8
    assert samples.query("subject == 'OAS39999'")["bold_path"].tolist() == [""]  # T1w only: a sample, fALFF empty
    assert samples.query("subject == 'OAS39998'")["T1w_path"].tolist() == [""]
    excluded = pd.read_csv(tmp_path / "results" / "oasis" / "preproc" / "discovery_excluded.tsv", sep="\t")
    assert set(excluded["subject"]) == {"OAS39997"} and excluded["reason"].str.contains("no usable scan").any()
    counts_run = job_counts(snakemake(tmp_path, "-n", config=config).stdout)
    assert counts_run["preprocess_anat"] == counts["T1w"] and counts_run["preprocess_bold"] == counts["bold"]
    assert "preprocess_bold_alff" not in counts_run
    assert counts_run["collect"] == counts_run["qc"] == 1 and counts_run["pack"] == 2 and counts_run["landmarks"] == 4


@pytest.mark.parametrize("sources,structural,bold_rule", [
    ("[T1w, T2w, fALFF]", ["T2w"], "preprocess_bold"),
    ("[FLAIR, T1w, T2w, ALFF]", ["FLAIR", "T2w"], "preprocess_bold_alff"),
])
def test_more_sources_plan_their_own_preprocessing_landmarks_and_one_pack_per_fold(tmp_path, sources, structural, bold_rule):
    """sources with T2w / FLAIR / ALFF: a preprocess_anat job per structural image (its
    {suffix} named, T1w's too), the BOLD jobs declaring the ALFF maps when ALFF is a source,
    landmarks per source and fold, one pack per fold with every source's landmarks."""
    clinical, counts = zero_byte_bids(tmp_path / "bids", "oasis")
    config = bids_config(tmp_path, clinical, sources)
    snakemake(tmp_path, "results/oasis/samples.tsv", config=config)  # the checkpoint: scan jobs are planned after it
    proc = snakemake(tmp_path, "-n", "-p", config=config)
    planned = job_counts(proc.stdout)
    names = sources.strip("[]").split(", ")
    assert planned["preprocess_anat"] == counts["T1w"] + sum(counts[s] for s in structural)
    assert planned[bold_rule] == counts["bold"] and {"preprocess_bold", "preprocess_bold_alff"} - {bold_rule} - set(planned)
    assert planned["landmarks"] == 2 * len(names) and planned["pack"] == 2 and planned["collect"] == 1
    for suffix in ["T1w", *structural]:
        assert f"--suffix {suffix}" in proc.stdout and f"desc-brain{suffix}_mask.nii.gz" in proc.stdout
    for other in {"T2w", "FLAIR"} - set(structural):
        assert f"_{other}.nii.gz" not in proc.stdout  # a structural suffix that is no source is never read
    assert f"--sources {' '.join(names)}" in proc.stdout
    assert "--landmarks " + " ".join(f"{s}=results/oasis/preproc/fold0/landmarks_{s}.npy" for s in names) in proc.stdout
    assert ("--out-alff " in proc.stdout) == ("ALFF" in names)


def test_single_modality_samples_are_kept_through_discovery_with_same_session_pairing(tmp_path):
    """pairing: same_session with [T1w, T2w, fALFF]: one sample per session, no exclusion
    for a subject lacking a modality."""
    clinical, _ = zero_byte_bids(tmp_path / "bids", "oasis")
    config = bids_config(tmp_path, clinical, "[T1w, T2w, fALFF]")
    config.write_text(config.read_text() + "    discover: {pairing: same_session}\n")
    snakemake(tmp_path, "results/oasis/samples.tsv", config=config)
    samples = pd.read_csv(tmp_path / "results" / "oasis" / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert len(samples) == 6 * 2 + 2 and (samples["T2w_path"] != "").sum() == 12
    assert samples.query("subject == 'OAS39998'")["sample"].tolist() == ["sub-OAS39998_none__none__ses-d0100_run-01"]


# session scope: under pytest-xdist a module-scoped fixture is torn down whenever the
# worker turns to another module's test, and this run would be built again
@pytest.fixture(scope="session")
def mri_run(tmp_path_factory):
    """One tiny MRI run (.test/config-mri.yaml: 10 synthetic subjects plus 8 defective ones,
    two methods, two folds) through --report, shared by the tests that read it (building
    it once per test cost 5 minutes of the suite)."""
    workdir = tmp_path_factory.mktemp("mri_run")
    snakemake(workdir, config=ROOT / ".test" / "config-mri.yaml")
    snakemake(workdir, "--report", "report.html", config=ROOT / ".test" / "config-mri.yaml")
    return workdir


@pytest.fixture
def mri_copy(mri_run, tmp_path):
    """A copy of the finished MRI run (file times and Snakemake's metadata kept), for the
    tests that change it."""
    import shutil

    return Path(shutil.copytree(mri_run, tmp_path / "run", symlinks=True))


def preprocessing_files(workdir: Path) -> dict[str, int]:
    """Every per-scan derivative under results/oasis_synthetic/preproc/sub-*: path -> mtime (ns)."""
    root = workdir / "results" / "oasis_synthetic" / "preproc"
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.glob("sub-*/**/*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.xdist_group("mri_run")
def test_a_new_discovery_of_unchanged_data_preprocesses_no_scan(mri_copy):
    """Scan jobs depend on their raw scans, not on samples.tsv: discovery run again (same data)
    leaves every derivative alone, and nothing is planned for any scan afterwards."""
    before = preprocessing_files(mri_copy)
    assert len(before) > 100
    config = ROOT / ".test" / "config-mri.yaml"
    snakemake(mri_copy, "--forcerun", "discover", "results/oasis_synthetic/excluded.tsv", config=config)
    assert preprocessing_files(mri_copy) == before  # no scan preprocessed again
    counts = job_counts(snakemake(mri_copy, "-n", config=config).stdout)
    assert counts.get("preprocess_anat", 0) == counts.get("preprocess_bold", 0) == 0, counts
    assert counts.get("discover", 0) == 0


@pytest.mark.slow
@pytest.mark.xdist_group("mri_run")
def test_changing_one_raw_t1w_replans_only_its_chain(mri_copy):
    res = mri_copy / "results" / "oasis_synthetic"
    import nibabel as nib

    samples = pd.read_csv(res / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    t1 = mri_copy / samples.loc[samples["T1w_path"] != "", "T1w_path"].iloc[0]
    # a changed scan (Snakemake compares the checksums of inputs under 1 MB, so a touch that
    # leaves the bytes alone is rightly not a change)
    img = nib.load(t1)
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj) * 1.01, img.affine, img.header), t1)
    proc = snakemake(mri_copy, "-n", config=ROOT / ".test" / "config-mri.yaml")
    counts = job_counts(proc.stdout)
    assert counts["preprocess_anat"] == 1 and counts.get("preprocess_bold", 0) == 0, counts
    assert counts.get("discover", 0) == 0 and counts["collect"] == 1
    assert f"scan={t1.name.removesuffix('_T1w.nii.gz')}" in proc.stdout  # that scan, no other
    assert counts["train"] == 4  # what depends on the preprocessed samples follows


@pytest.mark.slow
@pytest.mark.xdist_group("mri_run")
def test_delete_all_output_removes_every_derivative(mri_copy):
    assert preprocessing_files(mri_copy)
    snakemake(mri_copy, "--delete-all-output", config=ROOT / ".test" / "config-mri.yaml")
    left = [p for p in (mri_copy / "results").rglob("*") if p.is_file() and "logs" not in p.parts
            and "benchmarks" not in p.parts]
    assert left == [], left[:10]


@pytest.mark.slow
@pytest.mark.xdist_group("mri_run")
def test_preprocessing_of_synthetic_subjects_with_bad_inputs(mri_run):
    """The good synthetic subjects end on the configured MNI grid with QC; every defective
    scan is listed in excluded.tsv with its reason, and only its source is lost: a subject
    with a bad BOLD run keeps a T1w-only sample, one with a bad T1w header a fALFF-only one;
    a subject with nothing usable (or no clinical visit) has no sample."""
    import nibabel as nib

    res = mri_run / "results" / "oasis_synthetic"
    truth = pd.read_csv(res / "synthetic_bids" / "derivatives" / "truth" / "bad_inputs.tsv", sep="\t", dtype=str)
    excluded = pd.read_csv(res / "excluded.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert set(truth["subject"]) <= set(excluded["subject"])  # nothing dropped silently
    assert (excluded["reason"].str.len() > 0).all()
    paths = {Path(p).name: reason for p, reason in zip(excluded["path"], excluded["reason"])}
    samples = pd.read_csv(res / "preproc" / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    for bad in truth.itertuples():
        assert Path(bad.path).name in paths  # the defective file is listed ...
        reasons = excluded.loc[excluded["subject"] == bad.subject, "reason"]
        assert reasons.str.contains(bad.reason_contains).any(), (bad.subject, list(reasons))  # ... with the step's reason
        mine = samples[samples["subject"] == bad.subject]
        if bad.excluded_by in ("discover", "clinical"):
            assert mine.empty
        else:  # one sample with the other source only
            lost = "T1w" if bad.excluded_by == "header" else "fALFF"
            kept = ({"T1w", "fALFF"} - {lost}).pop()
            assert len(mine) == 1 and mine[lost].iloc[0] == "" and mine[kept].iloc[0] != "", (bad.subject, mine)
    good = samples[~samples["subject"].isin(set(truth["subject"]))]
    assert good["subject"].nunique() == 10  # every good one, the single-modality ones included
    sessions = pd.read_csv(res / "synthetic_bids" / "derivatives" / "truth" / "sessions.tsv", sep="\t", dtype=str)
    no_bold = set(sessions.loc[sessions["bold_runs"] == "0", "subject"])
    no_t1 = set(sessions.loc[sessions["T1w"] == "0", "subject"])
    assert no_bold and no_t1  # the synthetic data plant both kinds
    assert (good.loc[good["subject"].isin(no_bold), "fALFF"] == "").all()
    assert (good.loc[good["subject"].isin(no_t1), "T1w"] == "").all()
    img = nib.load(mri_run / samples.loc[samples["T1w"] != "", "T1w"].iloc[0])
    assert img.shape == (32, 32, 32) and np.allclose(nib.affines.voxel_sizes(img.affine), 6.0)
    with_falff = samples[samples["fALFF"] != ""].iloc[0]
    falff = np.asarray(nib.load(mri_run / with_falff["fALFF"]).dataobj)
    mask = np.asarray(nib.load(mri_run / with_falff["mask_fALFF"]).dataobj) > 0
    assert 0 < falff[mask].mean() < 1 and (falff[~mask] == 0).all()
    qc = pd.read_csv(res / "qc" / "qc.tsv", sep="\t", dtype={"subject": str}, keep_default_na=False)
    assert len(qc) == len(samples) and (res / "qc" / "index.html").exists()
    assert "falff_out_of_range" not in ",".join(qc.loc[qc["has_fALFF"] == 0, "flags"])  # no fALFF, no fALFF flag
    montages = sorted(p.name for p in (res / "qc" / "montages").glob("*.png"))
    assert montages == sorted(f"sub-{s}.png" for s in samples["subject"].unique())  # one per subject


@pytest.mark.slow
@pytest.mark.xdist_group("mri_run")
def test_tiny_mri_run_two_methods_two_folds_to_the_summary(mri_run):
    """Synthetic BIDS → preprocessing → per-fold standardisation → 3D training →
    tuned HC-vs-AD probe and CKA/SVCCA → the Fig. 6 table (.test/config-mri.yaml)."""
    res = mri_run / "results" / "oasis_synthetic"
    for k in (0, 1):
        split = pd.read_csv(res / "splits" / f"fold{k}.tsv", sep="\t", dtype=str)
        assert split["subject"].is_unique  # one split per subject: no leakage across splits
        store = res / "preproc" / f"fold{k}" / "store"
        t1 = np.load(store / "T1w.npy", mmap_mode="r")
        assert t1.dtype == np.float16 and t1.shape[1:] == (1, 32, 32, 32)
        index = pd.read_csv(store / "index.tsv", sep="\t", dtype={"subject": str})
        assert set(index["subject"]) == set(split["subject"])
        # single-modality samples: has_<source> = 0 and a zero volume there, never both absent
        falff = np.load(store / "fALFF.npy", mmap_mode="r")
        has_t1, has_falff = index["has_T1w"].to_numpy().astype(bool), index["has_fALFF"].to_numpy().astype(bool)
        assert (~has_t1).any() and (~has_falff).any() and (has_t1 | has_falff).all()
        assert not np.any(t1[~has_t1]) and not np.any(falff[~has_falff]) and np.all(np.abs(t1[has_t1]).max(axis=(1, 2, 3, 4)) > 0)
        # metadata for criteria such as y-aware: the age of subjects.tsv reaches the store, per sample
        subjects = pd.read_csv(res / "subjects.tsv", sep="\t", dtype={"subject": str}).set_index("subject")
        assert np.allclose(index["age"].to_numpy(float), subjects.loc[index["subject"], "age"].to_numpy(float))
    summary = pd.read_csv(res / "summary.tsv", sep="\t")
    auc = summary[(summary.metric == "roc_auc") & (summary.split == "test")]
    assert set(auc.method) == {"random", "S"} and set(auc.fold) == {0, 1}
    assert set(auc.source) == {"T1w", "fALFF"} and auc.value.between(0, 1).all()
    table = (res / "table.md").read_text()
    for column in ("T1w roc_auc", "fALFF roc_auc", "T1w~fALFF cka", "T1w~fALFF svcca"):
        assert column in table
    # resume state (a study, a training checkpoint) is gone once its job has finished
    assert not list(res.glob("probe/*/*.optuna.db")) and not list(res.glob("models/*/*/checkpoint.pt"))


@pytest.mark.slow
@pytest.mark.xdist_group("mri_run")
def test_the_report_holds_the_mri_quality_control(mri_run):
    """--report embeds qc.tsv, the QC page and every subject's montage (with captions)
    next to the results tables and figures."""
    html = (mri_run / "report.html").read_text(errors="ignore")
    montages = sorted((mri_run / "results" / "oasis_synthetic" / "qc" / "montages").glob("sub-*.png"))
    assert montages
    for name in ["qc.tsv", "index.html", "table.html", "excluded.tsv", "figure.png", "QC montages"] + [m.name for m in montages]:
        assert name in html, name
    assert "QC montage of one subject" in html  # the montage caption

def plain_snakemake(workdir, *args, check=True):
    """Snakemake exactly as a user types it (no --configfile added), from ``workdir``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "workflow")})
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def paper_config_on(tmp_path: Path) -> Path:
    """resources/configs/paper.yaml with its data paths pointed at zero-byte stand-ins
    (everything else exactly as shipped)."""
    import yaml

    config = yaml.safe_load((ROOT / "resources" / "configs" / "paper.yaml").read_text())
    clinical, _ = zero_byte_bids(tmp_path / "bids", "oasis")
    datasets = config["datasets"]
    datasets["oasis3"].update(bids_dir=str(tmp_path / "bids"), clinical_csv=str(clinical))
    for folder, files in (("mnist", [f"{f}.gz" for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]),
                          ("svhn", ["train_32x32.mat", "test_32x32.mat"])):
        for f in files:
            (tmp_path / "data" / folder).mkdir(parents=True, exist_ok=True)
            (tmp_path / "data" / folder / f).touch()
    datasets["two_view_mnist"]["path"] = datasets["mnist_svhn"]["mnist_path"] = str(tmp_path / "data" / "mnist")
    datasets["mnist_svhn"]["svhn_path"] = str(tmp_path / "data" / "svhn")
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_configfile_is_the_whole_run_not_an_extension_of_the_demo(tmp_path):
    """`--configfile paper.yaml` plans the paper's grid (5 folds × 22 methods for each of
    its three datasets; OASIS-3's scans wait on its discovery checkpoint) and nothing of
    config.yaml's demo."""
    import yaml

    config = paper_config_on(tmp_path)
    n_methods = len(yaml.safe_load(config.read_text())["methods"])
    proc = plain_snakemake(tmp_path, "-n", "--cores", "1", f"--configfile={config}")
    counts = job_counts(proc.stdout)
    assert counts["train"] == counts["embed"] == counts["probe"] == counts["similarity"] == 3 * 5 * n_methods
    assert counts["splits"] == 2 * 5 and counts["splits_mri"] == 5 and counts["discover"] == 1
    assert counts["prepare_two_view"] == counts["prepare_mnist_svhn"] == 1
    assert "oasis_synthetic" not in proc.stdout and "synthetic_bids" not in counts
    assert "fold0" in proc.stdout and "fold4" in proc.stdout
    assert "is extended by additional config" not in proc.stdout + proc.stderr


def test_the_test_mri_configfile_runs_only_its_dataset(tmp_path):
    proc = plain_snakemake(tmp_path, "-n", "--cores", "1", f"--configfile={ROOT / '.test' / 'config-mri.yaml'}")
    counts = job_counts(proc.stdout)
    assert counts["synthetic_bids"] == counts["discover"] == 1
    assert not {"prepare_two_view", "prepare_mnist_svhn"} & set(counts) and "two_view_mnist" not in proc.stdout


def test_no_configfile_runs_the_demo_and_targets_may_follow_the_options(tmp_path):
    counts = job_counts(plain_snakemake(tmp_path, "-n", "--cores", "1").stdout)
    assert counts["synthetic_bids"] == 1 and counts["prepare_two_view"] == 1  # both demo datasets
    target = "results/two_view_mnist/probe/L/fold3.tsv"
    for args in ([target, f"--configfile={ROOT / '.test' / 'config.yaml'}"],
                 [f"--configfile={ROOT / '.test' / 'config.yaml'}", target]):
        counts = job_counts(plain_snakemake(tmp_path, "-n", "--cores", "1", *args).stdout)
        assert counts == {"embed": 1, "prepare_two_view": 1, "probe": 1, "splits": 1, "train": 1, "total": 5}


@pytest.mark.parametrize("key", ["bids_dir", "clinical_csv"])
def test_a_missing_data_path_names_its_config_key(tmp_path, key):
    clinical, _ = zero_byte_bids(tmp_path / "bids", "oasis")
    paths = {"bids_dir": tmp_path / "bids", "clinical_csv": clinical}
    paths[key] = tmp_path / "nowhere"
    config = tmp_path / "config.yaml"
    config.write_text(f"datasets:\n  oasis:\n    kind: bids_mri\n    bids_dir: {paths['bids_dir']}\n"
                      f"    clinical_csv: {paths['clinical_csv']}\n")
    proc = plain_snakemake(tmp_path, "-n", "--cores", "1", f"--configfile={config}", check=False)
    assert proc.returncode != 0
    assert f"datasets.oasis.{key}: {tmp_path / 'nowhere'} is not a" in proc.stdout + proc.stderr


@pytest.mark.parametrize("backend,torch,env", [("python", "cuda", "../../envs/mmssl.yaml"), ("fsl", "cuda", "../../envs/fsl.yaml"),
                                               ("python", "cpu", "../../envs/mmssl-cpu.yaml"),
                                               ("fsl", "cpu", "../../envs/fsl-cpu.yaml")])
def test_rules_that_can_call_fsl_use_the_fsl_env_with_the_fsl_backend(tmp_path, backend, torch, env):
    """With --software-deployment-method conda, the scan rules (preprocess_anat/_bold/
    _bold_alff) run in envs/fsl.yaml (FSL from its conda channel) when the dataset's backend is fsl."""
    from types import SimpleNamespace

    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, ResourceSettings

    clinical, _ = zero_byte_bids(tmp_path / "bids", "oasis")
    config = tmp_path / "config.yaml"
    config.write_text(f"conda_torch: {torch}\ndatasets:\n  oasis:\n    kind: bids_mri\n    bids_dir: {tmp_path}/bids\n"
                      f"    clinical_csv: {clinical}\n    preprocess: {{backend: {backend}}}\n")
    with SnakemakeApi() as api:
        workflow = api.workflow(resource_settings=ResourceSettings(), config_settings=ConfigSettings(configfiles=[config]),
                                snakefile=ROOT / "Snakefile", workdir=tmp_path)._workflow
        wildcards = SimpleNamespace(dataset="oasis", scan="x")
        for rule in ("preprocess_anat", "preprocess_bold", "preprocess_bold_alff"):
            assert workflow.get_rule(rule).conda_env(wildcards) == env
        assert workflow.get_rule("train").conda_env(wildcards) == f"../../envs/mmssl{'-cpu' if torch == 'cpu' else ''}.yaml"
    assert (ROOT / "workflow" / "rules" / env).resolve().is_file()  # where the rule looks for it


def test_the_known_answer_mri_kind_plans_a_store_and_a_binary_probe(tmp_path):
    config = tmp_path / "known.yaml"
    config.write_text("methods: [random, S]\ndatasets:\n  mri_known:\n    kind: synthetic_mri\n    n_subjects: 100\n"
                      "    splits: {n_folds: 5, test: fold}\n    folds: [0, 1]\n")
    proc = snakemake(tmp_path, "-n", "-p", config=config)
    counts = job_counts(proc.stdout)
    assert counts["prepare_known_mri"] == 1 and counts["splits"] == 2 and counts["train"] == 4
    assert "prepare_two_view" not in counts and "discover" not in counts
    assert "--task binary" in proc.stdout  # ROC AUC of HC vs AD, as for OASIS-3


def test_a_public_bids_layout_plans_with_only_bids_dir(tmp_path):
    """pybids' 7t_trt (sessions 1 and 2, no clinical table, TR in top-level sidecars) with
    nothing but kind and bids_dir: discovery, then one job per T1w and per resting BOLD run."""
    from test_bids_examples import example

    root = example("7t_trt")
    config = tmp_path / "config.yaml"
    config.write_text(f"results: results\nmethods: [random, S]\ndatasets:\n  t7:\n    kind: bids_mri\n    bids_dir: {root}\n")
    snakemake(tmp_path, "results/t7/samples.tsv", config=config)
    samples = pd.read_csv(tmp_path / "results" / "t7" / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert samples["subject"].nunique() == 10 and len(samples) == 60
    bold = samples[samples["bold_path"] != ""]
    prefrontal = bold["bold_path"].str.contains("acq-prefrontal")
    assert set(bold.loc[~prefrontal, "bold_RepetitionTime"].astype(float)) == {3.0}  # top-level sidecars, per acq
    assert set(bold.loc[prefrontal, "bold_RepetitionTime"].astype(float)) == {4.0}
    description = tmp_path / "results" / "t7" / "preproc" / "dataset_description.json"
    assert '"DatasetType": "derivative"' in description.read_text()
    proc = snakemake(tmp_path, "-n", "-p", config=config)
    planned = job_counts(proc.stdout)
    assert planned["preprocess_anat"] == 10 and planned["preprocess_bold"] == 60
    assert "--tr 3.0 --tr-source" in proc.stdout and "maps" not in planned  # no label, no decision to map


@pytest.mark.slow
def test_an_unlabelled_bids_dataset_trains_and_reports_similarity(tmp_path):
    """No clinical table and no label column: pretraining, similarity and the report run;
    the probe writes a row saying there is no label instead of failing."""
    from mmssl.cli import main

    bids = tmp_path / "bids"
    assert main(["synthetic-bids", "--out", str(bids), "--n-subjects", "10", "--seed", "1"]) == 0
    config = tmp_path / "config.yaml"
    config.write_text(
        "results: results\nmethods: [random, S]\nmodel: {width: 4, penalty: 0.0}\n"
        "train: {epochs: 1, batch_size: 2}\nprobe:\n  binary: {n_trials: 2}\ndatasets:\n  mine:\n    kind: bids_mri\n"
        f"    bids_dir: {bids}\n    falff: {{dummy_volumes: 4}}\n"
        "    preprocess:\n      grid: {voxel_mm: 6.0, size: 32}\n"
        "      registration: {shrink_factors: [4, 2], smoothing_sigmas: [2.0, 1.0], iterations: 50, moving_voxel_mm: 4.0}\n"
        "    splits: {n_folds: 2, test: fold, holdout: 0}\n    folds: [0]\n")
    snakemake(tmp_path, config=config)
    probe = pd.read_csv(tmp_path / "results" / "mine" / "probe" / "S" / "fold0.tsv", sep="\t")
    assert probe["note"].str.startswith("no label").all() and probe["roc_auc"].isna().all()
    similarity = pd.read_csv(tmp_path / "results" / "mine" / "similarity" / "S" / "fold0.tsv", sep="\t")
    assert similarity["cka"].notna().all()
    assert "n/a" in (tmp_path / "results" / "mine" / "table.md").read_text()


def chromium_or_skip() -> str:
    """Debian's Chromium (make browser installs it); under CI a missing browser fails."""
    path = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(path).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: `make test` installs it (make browser: apt-get install chromium)")
        pytest.skip(f"{path} is missing (apt-get install chromium)")
    return path


def shown_image(frame) -> dict:
    """Size and load state of the first <img> of a page or frame, as the browser has it."""
    return frame.locator("img").first.evaluate(
        "i => ({complete: i.complete, natural: i.naturalWidth, width: i.getBoundingClientRect().width, "
        "height: i.getBoundingClientRect().height})")


@pytest.mark.slow
@pytest.mark.xdist_group("mri_run")
def test_the_report_shows_results_table_qc_montage_and_map_in_a_browser(mri_run):
    """Snakemake's report opened in headless Chromium (Playwright), clicked through as a
    reader would: the landing page with the results table, the results table, the QC page with its montages and exclusions, a
    montage and a brain map are rendered with a non-zero size and their images loaded."""
    chromium = chromium_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})

        def open_result(category: str, subcategory: str | None, name: str | None):
            """Menu: the category, its subcategory (None: a category of one opens at once),
            then the eye of the row naming ``name`` (None: the first row, e.g. a montage
            listed by its subject label)."""
            page.goto((mri_run / "report.html").as_uri())
            page.get_by_text(category, exact=True).click()
            if subcategory:
                page.get_by_text(subcategory, exact=True).click()
            rows = page.locator("tr", has_text=name) if name else page
            rows.locator("a[iconname=eye]").first.click()
            page.wait_for_timeout(500)

        page.goto((mri_run / "report.html").as_uri())  # the landing page, as the report opens
        landing = page.locator("table", has_text="random (floor)").first
        landing.wait_for(state="visible", timeout=10_000)
        assert landing.bounding_box()["height"] > 40 and "oasis_synthetic" in page.inner_text("body")
        open_result("oasis_synthetic", "results", "table.html")
        frame = page.frames[-1]
        table = frame.locator("table").first
        assert table.is_visible() and table.bounding_box()["height"] > 40
        assert "random (floor)" in table.inner_text()
        open_result("oasis_synthetic", "quality control", "index.html")
        frame = page.frames[-1]
        assert frame.locator("#excluded").is_visible()
        image = shown_image(frame)
        assert image["complete"] and image["natural"] > 0 and image["height"] > 0, image
        open_result("oasis_synthetic", "QC montages", None)
        image = shown_image(page)
        assert image["complete"] and image["natural"] > 0 and image["height"] > 0, image
        open_result("maps", None, None)
        image = shown_image(page)
        assert image["complete"] and image["natural"] > 0 and image["height"] > 0, image
        browser.close()
