"""A zero-byte BIDS tree shaped like OASIS-3, with its clinical CSV, for planning benchmarks.

    python benchmarks/make_oasis_tree.py OUT_DIR [--subjects 800] [--seed 0]

Writes ``OUT_DIR/bids/sub-OAS3xxxx/ses-dNNNN/{anat,func}/`` with empty NIfTI files
(``..._run-01_T1w.nii.gz``, ``..._acq-TSE_T2w.nii.gz``, ``..._run-01_FLAIR.nii.gz``,
``..._task-rest_run-0N_bold.nii.gz``), a JSON sidecar beside
each (BOLD ones carry ``RepetitionTime``), ``dataset_description.json``, and
``OUT_DIR/OASIS3_UDSb4_cdr.csv`` in the OASIS-3 UDS layout that discovery reads
(``OASISID, OASIS_session_label, days_to_visit, age at visit, M/F, CDRTOT, dx1``, as
``mmssl.data.synthetic`` writes it). Discovery reads names only, so this tree plans
exactly like the real one (``snakemake -n``) without a byte of image data.

Shape at the default 800 subjects (OASIS-3: ~2,000 MR sessions, ~4,000 resting-state runs):
2.5 sessions per subject on average, one T1w per session (a few sessions have two runs or
none), a T2w in most sessions and a FLAIR in about half, two BOLD runs per session (some
three, a few one), a few subjects with no BOLD at all (T1w-only samples with the default
sources); 60 % HC, 25 % AD, 15 % other. Deterministic for a given seed (the T2w/FLAIR draws
come from a generator of their own, so the T1w/BOLD layout of a seed is what it was before
they were added).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

CLINICAL_NAME = "OASIS3_UDSb4_cdr.csv"
CLINICAL_COLUMNS = ("OASISID", "OASIS_session_label", "days_to_visit", "age at visit", "M/F", "CDRTOT", "dx1")
GROUPS = (("HC", 0.60, [("Cognitively normal", 0.0)]),
          ("AD", 0.25, [("AD Dementia", 0.5), ("AD Dementia", 1.0)]),
          ("other", 0.15, [("uncertain dementia", 0.5), ("Non AD dem- Other primary", 0.0)]))
# sessions per subject (OASIS-3 has 1 to 6+ MR sessions); mean 2.5
N_SESSIONS = ((1, 0.25), (2, 0.30), (3, 0.25), (4, 0.15), (5, 0.05))
N_T1W = ((1, 0.93), (2, 0.04), (0, 0.03))          # per session, mean 1.01
N_BOLD = ((2, 0.80), (3, 0.15), (1, 0.05))         # per session, mean 2.1
P_T2W, P_FLAIR = 0.85, 0.5                          # share of sessions with a T2w / a FLAIR
TR = 2.2


def _pick(rng: random.Random, table) -> int:
    values, weights = zip(*table)
    return rng.choices(values, weights)[0]


def _touch(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_oasis_tree(out_dir: str | Path, n_subjects: int = 800, seed: int = 0) -> dict:
    """Write the tree and CSV under ``out_dir``; returns counts and the two paths."""
    out_dir = Path(out_dir)
    bids = out_dir / "bids"
    rng = random.Random(seed)
    _touch(bids / "dataset_description.json", json.dumps({"Name": "OASIS-3 (zero-byte)", "BIDSVersion": "1.8.0"}))
    bold_sidecar = json.dumps({"RepetitionTime": TR, "TaskName": "rest"})
    visits: list[dict] = []
    extra = random.Random(f"{seed}-T2w-FLAIR")
    counts = {"subjects": n_subjects, "sessions": 0, "T1w": 0, "T2w": 0, "FLAIR": 0, "bold": 0, "no_bold_subjects": 0}
    for i in range(n_subjects):
        subject = f"OAS3{i + 1:04d}"
        group = rng.choices([g[0] for g in GROUPS], [g[1] for g in GROUPS])[0]
        dx, cdr = rng.choice(next(g[2] for g in GROUPS if g[0] == group))
        age, sex = rng.uniform(50, 90), rng.choice("MF")
        no_bold = rng.random() < 0.02  # T1w only: T1w-only samples
        counts["no_bold_subjects"] += no_bold
        day, days = rng.randint(0, 400), []
        for _ in range(_pick(rng, N_SESSIONS)):
            days.append(day)
            day += rng.randint(400, 1500)
        visit_days = {0}
        for day in days:
            ses = f"d{day:04d}"
            pre = f"sub-{subject}_ses-{ses}"
            folder = bids / f"sub-{subject}" / f"ses-{ses}"
            n_t1, n_bold = _pick(rng, N_T1W), 0 if no_bold else _pick(rng, N_BOLD)
            for r in range(1, n_t1 + 1):
                _touch(folder / "anat" / f"{pre}_run-{r:02d}_T1w.nii.gz")
                _touch(folder / "anat" / f"{pre}_run-{r:02d}_T1w.json", "{}")
            for r in range(1, n_bold + 1):
                _touch(folder / "func" / f"{pre}_task-rest_run-{r:02d}_bold.nii.gz")
                _touch(folder / "func" / f"{pre}_task-rest_run-{r:02d}_bold.json", bold_sidecar)
            for suffix, name, share in (("T2w", f"{pre}_acq-TSE_T2w", P_T2W), ("FLAIR", f"{pre}_run-01_FLAIR", P_FLAIR)):
                if extra.random() < share:
                    _touch(folder / "anat" / f"{name}.nii.gz")
                    _touch(folder / "anat" / f"{name}.json", "{}")
                    counts[suffix] += 1
            counts["sessions"] += 1
            counts["T1w"] += n_t1
            counts["bold"] += n_bold
            visit_days.add(max(0, day + rng.randint(-60, 60)))  # a UDS visit near every MR session
        for vday in sorted(visit_days):
            visits.append({"OASISID": subject, "OASIS_session_label": f"{subject}_UDSb4_d{vday:04d}",
                           "days_to_visit": vday, "age at visit": round(age + vday / 365.25, 2), "M/F": sex,
                           "CDRTOT": cdr, "dx1": dx})
    clinical = out_dir / CLINICAL_NAME
    with clinical.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CLINICAL_COLUMNS)
        writer.writeheader()
        writer.writerows(visits)
    return {**counts, "bids_dir": str(bids), "clinical_csv": str(clinical)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--subjects", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    info = make_oasis_tree(args.out_dir, args.subjects, args.seed)
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
