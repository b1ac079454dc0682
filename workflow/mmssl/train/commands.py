"""The training stage's sub-command: ``mmssl train`` (one method on one fold)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmssl.settings import settings_arg


def _train_cmd(args: argparse.Namespace) -> None:
    from mmssl.train.loop import train  # torch and the models: only when training

    train(args.store, args.split, args.method, args.fold, args.model, args.metrics, args.train_json, args.model_json)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the ``train`` sub-command (``args.func(args)`` runs it)."""
    p = sub.add_parser("train", help="train one method on one fold (resumes from its checkpoint)")
    p.add_argument("--store", type=Path, required=True, help="the packed store (results/{dataset}/store)")
    p.add_argument("--split", type=Path, required=True, help="results/{dataset}/splits/fold{k}.tsv")
    p.add_argument("--method", required=True, help="e.g. L-CL-S, random, AE (see mmssl.objectives)")
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--model", type=Path, required=True, help="output model.pt (checkpoint.pt is kept beside it)")
    p.add_argument("--metrics", type=Path, required=True, help="output metrics.tsv")
    p.add_argument("--train-json", type=settings_arg,
                   help="the train section: JSON object or .json file (left-out keys: schema defaults)")
    p.add_argument("--model-json", type=settings_arg,
                   help="the model section: JSON object or .json file (left-out keys: schema defaults)")
    p.set_defaults(func=_train_cmd)
