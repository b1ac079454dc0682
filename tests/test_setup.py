"""The installation itself: the lock, the conda env files made from it, and the Snakemake
bugs that decided the Snakemake pin (they fail here if a future pin brings them back)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "envs"))
import lock  # noqa: E402  (envs/lock.py: a script beside the env files, not part of the package)


def test_every_dependency_is_pinned_exactly_in_the_lock():
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    pins = {p.name: p for p in lock.read_lock()}
    for text in direct:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} (pyproject.toml) is not in envs/constraints.txt: run make lock"
        assert req.specifier.contains(pins[name].version), f"lock pins {name}=={pins[name].version}, outside {req}"
    assert pins["torch"].version == "2.13.0"


def test_this_environment_equals_the_lock():
    """`make` installs with -c envs/constraints.txt and checks this too; a venv made by hand
    with other versions fails here rather than testing something else."""
    assert lock.differences(lock.read_lock(), lock.installed()) == []


def test_differences_name_what_drifted():
    pins = lock.read_lock()
    have = {p.name: p.version for p in pins if p.applies() and not p.name.startswith(lock.CUDA_ONLY_PREFIXES)}
    assert lock.differences(pins, have) == []
    have["numpy"] = "1.0.0"
    have["left-over"] = "0.1"
    del have["pandas"]
    problems = lock.differences(pins, have)
    assert any(p.startswith("numpy==1.0.0 is installed; the lock pins") for p in problems)
    assert "left-over==0.1 is installed but not in the lock" in problems
    assert any(p.startswith("pandas==") and p.endswith("is locked but not installed") for p in problems)
    # the CPU build of torch carries a local label and lacks the CUDA build's packages
    have = {p.name: p.version for p in pins if p.applies() and not p.name.startswith(lock.CUDA_ONLY_PREFIXES)}
    have["torch"] = "2.13.0+cpu"
    assert lock.differences(pins, have) == []


@pytest.mark.parametrize("env", ["mmssl.yaml", "fsl.yaml", "mmssl-cpu.yaml", "fsl-cpu.yaml"])
def test_conda_env_files_pin_the_locked_versions(env, tmp_path, monkeypatch):
    """envs/*.yaml are generated from the lock (`make lock`); a stale one fails here. The CPU
    variants take torch's CPU build from PyTorch's index and none of the CUDA-only packages."""
    monkeypatch.setattr(lock, "HERE", tmp_path)
    lock.write_conda(lock.read_lock())
    assert (ROOT / "envs" / env).read_text() == (tmp_path / env).read_text()
    text = (ROOT / "envs" / env).read_text()
    assert "      - snakemake==" in text
    if env.endswith("-cpu.yaml"):
        assert "      - torch==2.13.0+cpu\n" in text and f"      - --extra-index-url {lock.CPU_INDEX}\n" in text
        assert not any(f"      - {prefix}" in text for prefix in lock.CUDA_ONLY_PREFIXES)
    else:
        assert "      - torch==2.13.0\n" in text and "      - nvidia-cudnn-cu13==" in text


def run_snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "workflow")})


def test_cores_1_runs_one_job_at_a_time(tmp_path):
    """Snakemake 9.10-9.16 started both `work` jobs at once under --cores 1 when they
    waited on a shared job of the same run (snakemake#3913)."""
    (tmp_path / "Snakefile").write_text(
        'rule all:\n    input: "a.done", "b.done"\n'
        'rule common:\n    output: "common"\n    shell: "touch {output}"\n'
        'rule work:\n    input: "common"\n    output: "{x}.done"\n'
        '    shell: "echo start $(date +%s.%N) >> log; sleep 1; echo end $(date +%s.%N) >> log; touch {output}"\n')
    proc = run_snakemake(tmp_path, "--cores", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [line.split() for line in (tmp_path / "log").read_text().splitlines()]
    assert [e[0] for e in events] == ["start", "end", "start", "end"], events


@pytest.mark.parametrize("target", ["results/two_view_mnist/prob/L/fold0.tsv", "results/two_view_mnist/probe/L/fold-1.tsv"])
def test_a_target_no_rule_makes_is_a_clean_missing_rule_error(tmp_path, target):
    """Snakemake 9.15 crashed on these with AttributeError: 'str' object has no attribute 'is_storage'."""
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", "-s", str(ROOT / "Snakefile"),
                         f"--configfile={ROOT / '.test' / 'config.yaml'}", target)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"No rule to produce {target}" in out and "is_storage" not in out and "Traceback" not in out


def test_xdist_groups_keep_a_shared_run_on_one_worker(tmp_path):
    """`make test` shares each end-to-end run between the tests that read it by putting
    them in one xdist_group; with pytest 9.2 and pytest-xdist 3.8 the group was split
    over both workers and every shared run was built twice."""
    (tmp_path / "test_group.py").write_text(
        "import os, pytest\n"
        "@pytest.fixture(scope='session')\n"
        "def run():\n"
        "    with open(os.environ['SETUPS'], 'a') as f:\n"
        "        f.write(os.environ.get('PYTEST_XDIST_WORKER', '?') + '\\n')\n"
        + "".join(f"@pytest.mark.xdist_group('g')\ndef test_g{i}(run): pass\n" for i in range(4))
        + "".join(f"def test_other{i}(): pass\n" for i in range(4)))
    setups = tmp_path / "setups.txt"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
                           str(tmp_path / "test_group.py")], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "SETUPS": str(setups)})
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert len(setups.read_text().split()) == 1  # the group's session fixture was built once
