"""The cluster profile (profiles/slurm) through the real snakemake-executor-plugin-slurm.

SLURM itself is replaced by stand-ins (tests/slurm_stub/slurm_stub.py: sbatch, sacct,
squeue, scontrol, sinfo, sacctmgr, sshare, scancel, srun) first on PATH: sbatch records
its command line and runs the job script in the background under a job id; sacct reports
the job's state as the plugin parses it (``<id>|<STATE>``). A pre-emption kills a job's
process group, is reported as PREEMPTED and, only for jobs submitted with --requeue, is
followed by a rerun under the same id, as SLURM does with PreemptMode=REQUEUE.
"""

import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml


ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "slurm"
sys.path.insert(0, str(ROOT / "tests" / "slurm_stub"))
import slurm_stub  # noqa: E402

# status checks every second instead of after 40 s (the plugin still adds 10 s per poll
# without news: the stand-in sbatch returns once its job has ended, see SLURM_STUB_SBATCH_WAIT)
FAST = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
        "--latency-wait", "1"]
LS_CHECKPOINT = "results/two_view_mnist/models/L-S/fold0/checkpoint.pt"


def slurm_env(tmp: Path, **extra: str) -> tuple[dict, Path]:
    """Environment with the stand-ins first on PATH; returns (env, stub state dir)."""
    bin_dir = slurm_stub.install(tmp / "slurm_bin")
    state = tmp / "slurm_state"
    state.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env.update(PATH=f"{bin_dir}:{Path(sys.executable).parent}:{env.get('PATH', '')}", SLURM_STUB_DIR=str(state),
               PYTHONPATH=str(ROOT / "workflow"), SLURM_STUB_SBATCH_WAIT="600", **extra)
    return env, state


def command(workdir: Path, snakefile: Path, profile: Path, *args: str, config: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", *args, "--profile", str(profile), "-s", str(snakefile),
           "--directory", str(workdir), *FAST]
    return cmd + ["--configfile", str(config)] if config else cmd  # --configfile last: it takes several values


def comment(sub: dict) -> str:
    return slurm_stub.option(sub["argv"], "--comment") or ""


def wrap(sub: dict) -> str:
    return slurm_stub.option(sub["argv"], "--wrap") or ""


def lines_of(state: Path, prefix: str) -> list[dict]:
    return [s for s in slurm_stub.submissions(state) if comment(s).startswith(prefix)]


def job_events(state: Path, jobid: str) -> list[str]:
    return [e for i, e in slurm_stub.events(state) if i == jobid]


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> None:
    end = time.time() + timeout
    while not predicate():
        if time.time() > end or (proc is not None and proc.poll() is not None):
            raise AssertionError("timed out" if time.time() > end else f"snakemake exited ({proc.returncode})")
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> str:
    """End a snakemake that waits on jobs (its stand-in jobs are ended by kill_all)."""
    proc.kill()
    return proc.communicate()[0]


# --- the demo through the profile: one run shared by the submit-line and pre-emption tests


# session scope: under pytest-xdist a module-scoped fixture is torn down whenever the
# worker turns to another module's test, and this run would be built again
@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """.test/config.yaml (two-view MNIST, methods random and L-S, fold 0) with 3 epochs,
    through profiles/slurm; the L-S training job is pre-empted once its epoch-1
    checkpoint exists (the profile's --requeue makes the stand-in SLURM rerun it)."""
    tmp = tmp_path_factory.mktemp("slurm_demo")
    config = yaml.safe_load((ROOT / ".test" / "config.yaml").read_text())
    config["train"]["epochs"] = 3
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    env, state = slurm_env(tmp)
    (state / "preempt.json").write_text(f'{{"match": "method=L-S", "after": "{LS_CHECKPOINT}",  "polls": 1}}')
    try:
        proc = subprocess.run(command(tmp, ROOT / "Snakefile", PROFILE, config=tmp / "config.yaml"), cwd=tmp,
                              env=env, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        yield tmp, state, proc.stdout + proc.stderr
    finally:
        slurm_stub.kill_all(state)


@pytest.mark.slow
@pytest.mark.xdist_group("slurm_demo")
def test_profile_submits_one_gpu_job_per_method_and_fold(demo_run):
    tmp, state, _ = demo_run
    subs = slurm_stub.submissions(state)
    assert all("--requeue" in s["argv"] for s in subs)  # slurm-requeue: true
    # train alone, one GPU job per (method, fold), under 24 h; then group "evaluate" (embed ->
    # probe + similarity); a group job's --comment names the group, the --wrap'ed command its jobs
    trains = lines_of(state, "rule_train_")
    assert sorted(re.search(r"method=([^,'\s]+).*fold=(\d+)", comment(s) + wrap(s)).groups()
                  for s in trains) == [("L-S", "0"), ("random", "0")], [comment(s) for s in subs]
    for s in trains:
        argv = s["argv"]
        assert "--gpus=1" in argv or "--gres=gpu:1" in argv
        assert slurm_stub.option(argv, "-p") == "gpu" and "--cpus-per-task=8" in argv
        assert slurm_stub.option(argv, "--mem") == "32000" and slurm_stub.option(argv, "-t") == "1380"
    evaluates = lines_of(state, "rule_evaluate_")
    assert len(evaluates) == 2
    for s in evaluates:
        argv = s["argv"]
        assert "--gpus=1" in argv or "--gres=gpu:1" in argv  # embed's GPU
        assert slurm_stub.option(argv, "--mem") == "16000"  # embed's, the largest layer
        assert slurm_stub.option(argv, "-t") == "90"  # runtime adds up over layers: 30 + max(60, 10)
    assert all(int(slurm_stub.option(s["argv"], "-t")) < 24 * 60 for s in subs)
    (prep,) = lines_of(state, "rule_prepare_two_view")
    assert slurm_stub.option(prep["argv"], "-p") == "cpu" and "--cpus-per-task=4" in prep["argv"]
    assert slurm_stub.option(prep["argv"], "--mem") == "8000" and slurm_stub.option(prep["argv"], "-t") == "60"
    assert not any("--gpus" in a or "--gres" in a for a in prep["argv"])
    assert len(subs) == 5  # localrules (splits, report) run on the submit host
    assert not [s for s in subs if comment(s).startswith(("rule_splits", "rule_report", "rule_all"))]
    summary = pd.read_csv(tmp / "results" / "two_view_mnist" / "summary.tsv", sep="\t")
    assert set(summary.method) == {"random", "L-S"}


@pytest.mark.slow
@pytest.mark.xdist_group("slurm_demo")
def test_preempted_training_is_requeued_and_resumes_from_its_checkpoint(demo_run):
    tmp, state, output = demo_run
    ls = next(s for s in lines_of(state, "rule_train_") if "method=L-S" in comment(s) + wrap(s))
    assert job_events(state, ls["id"]) == ["started run 1", "preempted", "requeued", "started run 2",
                                           "completed (exit 0)"]
    assert "A Job preemption" in output  # the plugin saw PREEMPTED and kept waiting for the job
    log = (tmp / "results" / "two_view_mnist" / "logs" / "train" / "L-S" / "fold0.log").read_text()
    assert f"resumed from {LS_CHECKPOINT} at epoch 1" in log
    metrics = pd.read_csv(tmp / "results" / "two_view_mnist" / "models" / "L-S" / "fold0" / "metrics.tsv", sep="\t")
    assert metrics["epoch"].tolist() == [1, 2, 3]
    other = next(s for s in lines_of(state, "rule_train_") if "method=random" in comment(s) + wrap(s))
    assert job_events(state, other["id"]) == ["started run 1", "completed (exit 0)"]


TOY_TRAIN = """
rule train:
    output: "model.pt"
    shell: "mkdir -p ckpt && touch ckpt/checkpoint.pt && sleep 120 && touch {output}"
"""


@pytest.mark.slow
def test_without_requeue_a_preempted_job_is_not_rerun(tmp_path):
    """The negative half: a profile without slurm-requeue submits without --requeue, and
    the pre-empted job is never run again (the plugin would wait on it forever)."""
    profile = tmp_path / "profile"
    profile.mkdir()
    text = (PROFILE / "config.v8+.yaml").read_text()
    assert "slurm-requeue: true\n" in text
    (profile / "config.v8+.yaml").write_text(text.replace("slurm-requeue: true\n", ""))
    (tmp_path / "Snakefile").write_text(TOY_TRAIN)
    env, state = slurm_env(tmp_path)
    (state / "preempt.json").write_text('{"match": "train", "after": "ckpt/checkpoint.pt", "polls": 1}')
    proc = subprocess.Popen(command(tmp_path, tmp_path / "Snakefile", profile), cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: any(e == "not-requeued" for _, e in slurm_stub.events(state)), 90, proc)
        time.sleep(1)
        (sub,) = slurm_stub.submissions(state)
        assert "--requeue" not in sub["argv"]
        assert job_events(state, sub["id"]) == ["started run 1", "preempted", "not-requeued"]
    finally:
        stop(proc)
        slurm_stub.kill_all(state)


# --- MRI preprocessing: what a group of parallel 1-thread scans asks for ------------------

TOY_PREPROCESS = """
localrules: collect
rule collect:
    input: "model.pt", expand("pre/t1_{i}.nii", i=range(3)), expand("pre/bold_{i}.nii", i=range(2))
    output: "all.txt"
    shell: "touch {output}"
rule preprocess_anat:
    output: "pre/t1_{i}.nii"
    group: "preprocess"
    shell: "touch {output}"
rule preprocess_bold:
    output: "pre/bold_{i}.nii"
    group: "preprocess"
    shell: "touch {output}"
rule train:
    output: "model.pt"
    shell: "touch {output}"
"""


def expected_group(n: int, cores: int | None, threads=1, mem_mb=2000, runtime=10) -> dict:
    """GroupResources.basic_layered: parallel jobs are stacked into layers no wider than
    --cores (unbounded if unset); a layer sums threads and memory, the group asks for its
    widest layer and for the sum of the layers' runtimes."""
    per_layer = min(n, cores // threads) if cores else n
    return {"cpus": per_layer * threads, "mem": per_layer * mem_mb, "runtime": runtime * math.ceil(n / per_layer)}


@pytest.mark.slow
def test_preprocess_group_requests(tmp_path):
    """5 parallel preprocess_anat/preprocess_bold jobs (threads 1, mem_mb 2000, runtime 10
    from the profile) in one group "preprocess" job: as the profile is, and with --cores 2,
    which stacks them into layers of 2 (and also caps every rule's threads at 2)."""
    profile_cores = yaml.safe_load((PROFILE / "config.v8+.yaml").read_text()).get("cores")
    cases = {"profile": ([], profile_cores), "cores2": (["--cores", "2"], 2)}
    procs, states = {}, {}
    try:
        for name, (args, _) in cases.items():
            work = tmp_path / name
            work.mkdir()
            (work / "Snakefile").write_text(TOY_PREPROCESS)
            env, states[name] = slurm_env(work, SLURM_STUB_HOLD="1")  # record sbatch lines, run nothing
            procs[name] = subprocess.Popen(command(work, work / "Snakefile", PROFILE, *args), cwd=work, env=env,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name in cases:
            wait_for(lambda: len(slurm_stub.submissions(states[name])) == 2, 60, procs[name])
    finally:
        outputs = {name: stop(proc) for name, proc in procs.items()}
    for name, (_, cores) in cases.items():
        (group,) = lines_of(states[name], "rule_preprocess")
        (train,) = lines_of(states[name], "rule_train")  # train alone
        argv = group["argv"]
        got = {"cpus": int(next(a for a in argv if a.startswith("--cpus-per-task=")).split("=")[1]),
               "mem": int(slurm_stub.option(argv, "--mem")), "runtime": int(slurm_stub.option(argv, "-t"))}
        assert got == expected_group(5, cores), (name, got, outputs[name][-2000:])
        assert slurm_stub.option(argv, "-p") == "cpu" and "--requeue" in argv
        assert f"--cpus-per-task={min(8, cores or 8)}" in train["argv"]


TOY_OOM = """
rule all:
    input: "done.txt"
rule big:
    output: "done.txt"
    shell: "touch {output}"
"""


@pytest.mark.slow
def test_a_retry_after_out_of_memory_asks_for_more_memory_and_time(tmp_path):
    """The stand-in SLURM kills the first job as out of memory (sacct: OUT_OF_MEMORY): the
    profile's retry resubmits it with mem_mb and runtime times the attempt number."""
    (tmp_path / "Snakefile").write_text(TOY_OOM)
    env, state = slurm_env(tmp_path, SLURM_STUB_OOM="big")
    try:
        proc = subprocess.run(command(tmp_path, tmp_path / "Snakefile", PROFILE), cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        first, second = slurm_stub.submissions(state)
        assert job_events(state, first["id"]) == ["started run 1", "out_of_memory"]
        assert job_events(state, second["id"]) == ["started run 1", "completed (exit 0)"]
        mem = [int(slurm_stub.option(s["argv"], "--mem")) for s in (first, second)]
        runtime = [int(slurm_stub.option(s["argv"], "-t")) for s in (first, second)]
        assert mem == [4000, 8000] and runtime == [30, 60]  # default-resources: 4000 * attempt, 30 * attempt
    finally:
        slurm_stub.kill_all(state)
