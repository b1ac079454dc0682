"""Stand-ins for the SLURM commands that snakemake-executor-plugin-slurm calls.

One file, dispatched on the command name (``slurm_stub.py sbatch ARGS``); ``install``
writes tiny wrappers named sbatch, sacct, squeue, scontrol, sinfo, sacctmgr, sshare,
scancel and srun into a bin folder to put first on PATH. Standard library only.

State lives in $SLURM_STUB_DIR:
  submissions.jsonl       one line per sbatch call: {"id", "argv"} (argv as the shell split it)
  events.log              "<id> <event>" lines: started, preempted, requeued, not-requeued, ...
  jobs/<id>/              script.sh, argv.json, state, runs, pgid, preempted_polls
  preempt.json            optional: {"match": str, "after": path, "polls": int}: the first
                          run of a job whose script contains `match` is killed once `after`
                          (relative to the job's -D dir) exists, reported PREEMPTED for
                          `polls` status queries, then rerun under the same id if and only if
                          its sbatch line had --requeue (as SLURM does with PreemptMode=REQUEUE)
Environment:
  SLURM_STUB_HOLD         if set, jobs stay PENDING and never run (tests of sbatch lines only)
  SLURM_STUB_SBATCH_WAIT  seconds sbatch waits for its job to end (or be pre-empted) before
                          printing the id; the plugin's status polls back off by +10 s per
                          poll without news, so a test is much faster when sbatch returns
                          with the job done. 0 (default): return at once, job in background.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = ("sbatch", "sacct", "squeue", "scontrol", "sinfo", "sacctmgr", "sshare", "scancel", "srun")
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "PREEMPTED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")


def install(bin_dir: Path, python: str = sys.executable) -> Path:
    """Write the wrappers into bin_dir (executable), return bin_dir."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for cmd in COMMANDS:
        exe = bin_dir / cmd
        stub = shlex.quote(str(Path(__file__).resolve()))
        exe.write_text(f'#!/bin/sh\nexec {shlex.quote(python)} {stub} {cmd} "$@"\n')
        exe.chmod(0o755)
    return bin_dir


# --- reading the record (for tests) ------------------------------------------------------
def submissions(state: Path) -> list[dict]:
    path = Path(state) / "submissions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def events(state: Path) -> list[tuple[str, str]]:
    path = Path(state) / "events.log"
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines()] if path.exists() else []


def option(argv: list[str], name: str) -> str | None:
    """Value of an sbatch option given as `name value` or `name=value`."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1:]
    return None


def kill_all(state: Path) -> None:
    """Kill the process groups of every job still running (test teardown)."""
    for pgid_file in (Path(state) / "jobs").glob("*/pgid"):
        try:
            os.killpg(int(pgid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError, PermissionError):
            pass


# --- shared state ------------------------------------------------------------------------
def state_dir() -> Path:
    d = Path(os.environ["SLURM_STUB_DIR"])
    (d / "jobs").mkdir(parents=True, exist_ok=True)
    return d


class Locked:
    def __init__(self, d: Path):
        self.f = open(d / ".lock", "a")

    def __enter__(self):
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def log_event(d: Path, jobid: str, event: str) -> None:
    with Locked(d), open(d / "events.log", "a") as f:
        f.write(f"{jobid} {event}\n")


def set_state(job: Path, state: str) -> None:
    tmp = job / "state.tmp"
    tmp.write_text(state)
    tmp.replace(job / "state")


def get_state(job: Path) -> str:
    try:
        return (job / "state").read_text().strip()
    except FileNotFoundError:
        return "PENDING"


# --- commands ----------------------------------------------------------------------------
def sbatch(argv: list[str]) -> int:
    d = state_dir()
    if option(argv, "--wrap") is not None:
        script = "#!/bin/sh\n" + option(argv, "--wrap") + "\n"
    else:
        path = next((a for a in argv if not a.startswith("-") and a.endswith(("stdin", ".sh"))), "/dev/stdin")
        script = sys.stdin.read() if path in ("/dev/stdin", "-") else Path(path).read_text()
    with Locked(d):
        counter = d / "last_jobid"
        jobid = str(int(counter.read_text()) + 1 if counter.exists() else 1001)
        counter.write_text(jobid)
        with open(d / "submissions.jsonl", "a") as f:
            f.write(json.dumps({"id": jobid, "argv": argv}) + "\n")
    job = d / "jobs" / jobid
    job.mkdir(parents=True)
    (job / "script.sh").write_text(script)
    (job / "argv.json").write_text(json.dumps(argv))
    set_state(job, "PENDING")
    if os.environ.get("SLURM_STUB_HOLD"):  # never starts: for tests that only read sbatch lines
        print(jobid if "--parsable" in argv else f"Submitted batch job {jobid}")
        return 0
    subprocess.Popen([sys.executable, __file__, "_supervise", jobid], start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
    deadline = time.time() + float(os.environ.get("SLURM_STUB_SBATCH_WAIT", "0"))
    while time.time() < deadline and get_state(job) not in FINAL:
        time.sleep(0.1)
    print(jobid if "--parsable" in argv else f"Submitted batch job {jobid}")
    return 0


def supervise(jobid: str) -> int:
    """The job's life: run the script (again, if requeued after a pre-emption)."""
    d = state_dir()
    job = d / "jobs" / jobid
    argv = json.loads((job / "argv.json").read_text())
    script = (job / "script.sh").read_text()
    workdir = Path(option(argv, "-D") or option(argv, "--chdir") or os.getcwd())
    out = Path((option(argv, "--output") or option(argv, "-o") or f"slurm-{jobid}.out").replace("%j", jobid))
    spec_file = d / "preempt.json"
    spec = json.loads(spec_file.read_text()) if spec_file.exists() else None
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_STUB_DIR"}
    env.update(SLURM_JOB_ID=jobid, SLURM_JOBID=jobid, SLURM_JOB_NAME=option(argv, "--job-name") or "",
               SLURM_CPUS_PER_TASK=option(argv, "--cpus-per-task") or "1", SLURM_SUBMIT_DIR=str(workdir))
    gpus = option(argv, "--gpus") or (option(argv, "--gres") or "").rpartition(":")[2]
    if gpus:
        env["SLURM_GPUS"] = gpus
    run = 0
    while True:
        run += 1
        (job / "runs").write_text(str(run))
        env["SLURM_RESTART_COUNT"] = str(run - 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as log:
            proc = subprocess.Popen(["/bin/sh", "-c", script], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        (job / "pgid").write_text(str(proc.pid))
        set_state(job, "RUNNING")
        log_event(d, jobid, f"started run {run}")
        oom = os.environ.get("SLURM_STUB_OOM")
        if oom and oom in script and not (d / "oom_done").exists():
            # the first job whose script names SLURM_STUB_OOM is killed as the kernel's OOM
            # killer would, and reported OUT_OF_MEMORY (once per stub state)
            (d / "oom_done").write_text(jobid)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            set_state(job, "OUT_OF_MEMORY")
            log_event(d, jobid, "out_of_memory")
            return 0
        preempt = spec is not None and run == 1 and spec["match"] in script
        trigger = workdir / spec["after"] if preempt else None
        while proc.poll() is None:
            if trigger is not None and trigger.exists():
                os.killpg(proc.pid, signal.SIGTERM)  # SLURM: SIGTERM, then SIGKILL after KillWait
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                break
            time.sleep(0.05)
        if trigger is not None and trigger.exists() and get_state(job) != "CANCELLED":
            (job / "preempted_polls").write_text("0")
            set_state(job, "PREEMPTED")
            log_event(d, jobid, "preempted")
            give_up = time.time() + 600
            while int((job / "preempted_polls").read_text() or 0) < int(spec.get("polls", 2)) and time.time() < give_up:
                time.sleep(0.1)
            if "--requeue" in argv:
                log_event(d, jobid, "requeued")
                set_state(job, "PENDING")
                time.sleep(0.2)
                continue
            log_event(d, jobid, "not-requeued")
            return 0
        if get_state(job) != "CANCELLED":
            set_state(job, "COMPLETED" if proc.returncode == 0 else "FAILED")
        log_event(d, jobid, f"{get_state(job).lower()} (exit {proc.returncode})")
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers, as SLURM's cgroup would
        except ProcessLookupError:
            pass
        return 0


def status_lines(d: Path, name: str | None) -> list[str]:
    lines = []
    for job in sorted((d / "jobs").iterdir(), key=lambda p: int(p.name)):
        argv = json.loads((job / "argv.json").read_text())
        if name and option(argv, "--job-name") != name:
            continue
        state = get_state(job)
        if state == "PREEMPTED" and (job / "preempted_polls").exists():
            with Locked(d):
                polls = job / "preempted_polls"
                polls.write_text(str(int(polls.read_text() or 0) + 1))
        lines.append(f"{job.name}|{state}")
    return lines


def sacct(argv: list[str]) -> int:
    d = state_dir()
    fmt = (option(argv, "--format") or option(argv, "-o") or "").lower()
    with open(d / "calls.log", "a") as f:
        f.write(shlex.join(["sacct", *argv]) + "\n")
    if fmt.startswith("jobidraw,state"):
        print("\n".join(status_lines(d, option(argv, "--name"))))
    # Account%256 (account guess), Reason, nodelist: nothing known
    return 0


def squeue(argv: list[str]) -> int:
    print("\n".join(status_lines(state_dir(), option(argv, "--name"))))
    return 0


def scancel(argv: list[str]) -> int:
    d = state_dir()
    for jobid in (a for a in argv if a.split("_")[0].isdigit()):
        job = d / "jobs" / jobid
        if job.exists():
            set_state(job, "CANCELLED")
            log_event(d, jobid, "scancel")
            try:
                os.killpg(int((job / "pgid").read_text()), signal.SIGTERM)
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
    return 0


def srun(argv: list[str]) -> int:
    """`srun -n1 --cpu-bind=q --cpus-per-task=8 --gpus=1 --nodes=1 CMD...`: run CMD."""
    takes_value = {"-n", "-N", "-c", "-p", "-J", "--jobid", "--mem", "--mem-per-cpu", "-t"}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in takes_value else 1
    cmd = argv[i:]
    if cmd:
        os.execvp(cmd[0], cmd)
    return 0


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "sbatch":
        return sbatch(args)
    if cmd == "_supervise":
        return supervise(args[0])
    if cmd == "sacct":
        return sacct(args)
    if cmd == "squeue":
        return squeue(args)
    if cmd == "scancel":
        return scancel(args)
    if cmd == "srun":
        return srun(args)
    if cmd == "scontrol":
        print("MinJobAge               = 300 sec\nMaxArraySize            = 1001")
        return 0
    if cmd == "sinfo":
        print("PARTITION\ncpu*\ngpu")
        return 0
    return 0  # sacctmgr, sshare: no accounts known


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
