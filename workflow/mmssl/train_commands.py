"""CLI entry points of the training step and the embedding of evaluation latents."""

from __future__ import annotations

import argparse

from mmssl.cli import json_arg, path_arg


def run_train(args: argparse.Namespace) -> None:
    from mmssl.train import train

    train(args.store, args.split, args.method, args.fold, args.model, args.metrics, args.train_json, args.model_json)


def run_embed(args: argparse.Namespace) -> None:
    from mmssl.embed import embed

    embed(args.store, args.split, args.model, args.out, one_per_subject=args.one_per_subject, device=args.device)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one method on one fold (resumes from its checkpoint)")
    p.add_argument("--store", type=path_arg, required=True)
    p.add_argument("--split", type=path_arg, required=True, help="results/{dataset}/splits/fold{k}.tsv")
    p.add_argument("--method", required=True)
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--model", type=path_arg, required=True, help="output model.pt")
    p.add_argument("--metrics", type=path_arg, required=True, help="output metrics.tsv")
    p.add_argument("--train-json", type=json_arg, default={})
    p.add_argument("--model-json", type=json_arg, default={})
    p.set_defaults(func=run_train)

    p = sub.add_parser("embed", help="latents z of the frozen encoders for the evaluation splits")
    p.add_argument("--store", type=path_arg, required=True)
    p.add_argument("--split", type=path_arg, required=True)
    p.add_argument("--model", type=path_arg, required=True)
    p.add_argument("--out", type=path_arg, required=True)
    p.add_argument("--one-per-subject", action="store_true")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run_embed)
