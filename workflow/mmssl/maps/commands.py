"""The maps stage's sub-command, ``mmssl maps``: the brain maps of one source of one
(method, fold) (:mod:`mmssl.maps.pipeline`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmssl.settings import settings_arg


def _maps_cmd(args: argparse.Namespace) -> None:
    # torch, captum and nilearn: only when maps are made (keeps `mmssl --help` fast)
    from mmssl.maps.pipeline import run_maps

    run_maps(args.store, args.latents, args.model, args.source, args.classes, args.grid_json, args.settings_json,
             attribution=args.attribution, figure=args.figure, links=args.links, device=args.device,
             probe=args.probe, probe_settings=args.probe_settings_json)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the ``maps`` sub-command (``args.func(args)`` runs it)."""
    p = sub.add_parser("maps", help="brain maps of one source of a trained model: attribution of the AD-vs-HC decision "
                       "(Integrated Gradients) and cross-modal links -> NIfTI + JSON sidecars (+ PNG)")
    p.add_argument("--store", type=Path, required=True, help="the packed store the model was trained on")
    p.add_argument("--latents", type=Path, required=True, help="latents .npz written by `mmssl embed` for this model")
    p.add_argument("--model", type=Path, required=True, help="model.pt written by `mmssl train`")
    p.add_argument("--source", required=True, help="the source (modality) to map, e.g. T1w")
    p.add_argument("--classes", nargs=2, required=True, metavar=("NEGATIVE", "POSITIVE"),
                   help="the decision's classes, e.g. HC AD (the map is POSITIVE minus NEGATIVE)")
    p.add_argument("--grid-json", type=settings_arg, required=True,
                   help='the MNI grid of the store\'s volumes, e.g. {"voxel_mm": 6.0, "size": 32}')
    p.add_argument("--settings-json", type=settings_arg,
                   help="the dataset's maps section (left-out keys: schema defaults)")
    p.add_argument("--probe", type=Path,
                   help="the probe's table of these latents (`mmssl probe`, binary): the attribution explains its decision")
    p.add_argument("--probe-settings-json", type=settings_arg,
                   help="the probe's binary settings, as given to `mmssl probe` (saga's seed and iterations)")
    p.add_argument("--attribution", type=Path, help="output NIfTI of the attribution map (its .json sidecar beside it)")
    p.add_argument("--figure", type=Path, help="output PNG of the attribution map")
    p.add_argument("--links", type=Path,
                   help="output NIfTI of the cross-modal link map (CL/CS methods; .json beside it)")
    p.add_argument("--device", default="auto", help="auto (CUDA when usable), cpu, cuda or cuda:N")
    p.set_defaults(func=_maps_cmd)
