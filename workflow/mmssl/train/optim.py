"""The optimiser and learning-rate schedule of a training run (paper 3.3), and the lr drop
that follows a divergence."""

from __future__ import annotations

import torch

from mmssl.objectives.base import Method
from mmssl.train.settings import TrainSettings


def make_optimizer(model: Method, settings: TrainSettings, steps: int):
    """RAdam (lr 4e-4) with OneCycleLR (max_lr 0.01) over all steps (paper 3.3)."""
    opt = torch.optim.RAdam(model.parameters(), lr=settings.lr)
    if settings.scheduler == "onecycle":
        if settings.lr > settings.max_lr:
            raise ValueError(f"train.lr ({settings.lr:g}) is above train.max_lr ({settings.max_lr:g}): under the onecycle "
                             "scheduler lr is where the cycle starts and max_lr its peak")
        # div_factor makes lr the cycle's starting rate, so train.lr takes effect (PyTorch's
        # default div_factor 25 ignores it; with the defaults, 0.01 / 4e-4 = 25 all the same)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.max_lr, total_steps=max(steps, 1),
                                                    div_factor=settings.max_lr / settings.lr)
    elif settings.scheduler == "none":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    else:
        raise ValueError(f"train.scheduler must be 'onecycle' or 'none', got {settings.scheduler!r}")
    return opt, sched


def scale_lr(opt: torch.optim.Optimizer, sched, factor: float) -> None:
    """Lower the learning rate of every group, including OneCycleLR's own bounds and the
    base rates a LambdaLR recomputes the rate from at every step."""
    for group in opt.param_groups:
        for key in ("lr", "initial_lr", "max_lr", "min_lr"):
            if key in group:
                group[key] *= factor
    sched.base_lrs = [lr * factor for lr in sched.base_lrs]
