"""The evaluation stage's sub-commands: ``mmssl embed`` (:mod:`mmssl.evaluate.embed`),
``mmssl probe`` and ``mmssl similarity`` (:mod:`mmssl.evaluate.steps`), and for datasets
with known generating factors ``mmssl recovery`` and ``mmssl recovery-table``
(:mod:`mmssl.evaluate.recovery`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmssl.evaluate.steps import TASKS, run_probe, run_similarity
from mmssl.settings import settings_arg


def _embed_cmd(args: argparse.Namespace) -> None:
    from mmssl.evaluate.embed import embed  # torch and the model code: only when embedding

    embed(args.store, args.split, args.model, args.out, one_per_subject=args.one_per_subject, device=args.device)


def _probe_cmd(args: argparse.Namespace) -> None:
    run_probe(args.latents, args.out, args.settings_json, args.task)


def _similarity_cmd(args: argparse.Namespace) -> None:
    run_similarity(args.latents, args.out, args.settings_json)


def _recovery_cmd(args: argparse.Namespace) -> None:
    from mmssl.evaluate.recovery import run_recovery  # sklearn: only when it runs

    run_recovery(args.latents, args.store, args.out, n_boot=args.n_boot, seed=args.seed)


def _recovery_table_cmd(args: argparse.Namespace) -> None:
    from mmssl.evaluate.recovery import recovery_table

    recovery_table(args.tables, args.out)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the ``embed``, ``probe``, ``similarity``, ``recovery`` and ``recovery-table``
    sub-commands (``args.func(args)`` runs one)."""
    e = sub.add_parser("embed", help="latents z of the frozen encoders for the evaluation splits -> .npz")
    e.add_argument("--store", type=Path, required=True, help="the packed store the model was trained on")
    e.add_argument("--split", type=Path, required=True, help="the fold's split table (results/{dataset}/splits/fold{k}.tsv)")
    e.add_argument("--model", type=Path, required=True, help="model.pt written by `mmssl train`")
    e.add_argument("--out", type=Path, required=True, help="output latents .npz")
    e.add_argument("--one-per-subject", action="store_true",
                   help="per source (and per pair of sources), keep each subject's first sample having it "
                   "(the paper's protocol for brain MRI)")
    e.add_argument("--device", default="auto", help="auto (CUDA when usable), cpu, cuda or cuda:N")
    e.set_defaults(func=_embed_cmd)
    p = sub.add_parser("probe", help="linear / tuned logistic probe of frozen latents -> TSV")
    p.add_argument("--latents", type=Path, required=True, help="latents .npz written by `mmssl embed` (mmssl.evaluate.latents)")
    p.add_argument("--out", type=Path, required=True, help="output TSV; binary task also writes <stem>.optuna.db beside it")
    p.add_argument("--task", choices=TASKS, required=True, help="multiclass (linear layer) or binary (Optuna-tuned logistic)")
    p.add_argument("--settings-json", type=settings_arg,
                   help="the task's probe settings plus classes: JSON object or .json file (left-out keys: schema defaults)")
    p.set_defaults(func=_probe_cmd)
    s = sub.add_parser("similarity", help="CKA and SVCCA between every pair of sources -> TSV")
    s.add_argument("--latents", type=Path, required=True, help="latents .npz")
    s.add_argument("--out", type=Path, required=True, help="output TSV")
    s.add_argument("--settings-json", type=settings_arg,
                   help='the similarity section, e.g. {"split": "test", "svcca_keep": 0.99} (left-out keys: schema defaults)')
    s.set_defaults(func=_similarity_cmd)
    r = sub.add_parser("recovery", help="linear R² of each known generating factor from each source's latents -> TSV")
    r.add_argument("--latents", type=Path, required=True, help="latents .npz (the probe's)")
    r.add_argument("--store", type=Path, required=True,
                   help="the store whose index.tsv holds the factors (shared, private_<source>, nuisance_<name>)")
    r.add_argument("--out", type=Path, required=True, help="output TSV")
    r.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the eval subjects (interval)")
    r.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    r.set_defaults(func=_recovery_cmd)
    t = sub.add_parser("recovery-table", help="per-fold recovery tables -> Markdown (mean ± sd over folds)")
    t.add_argument("tables", type=Path, nargs="+", help=".../recovery/<method>/fold<k>.tsv")
    t.add_argument("--out", type=Path, required=True, help="output Markdown")
    t.set_defaults(func=_recovery_table_cmd)
