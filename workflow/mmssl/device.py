"""Which torch device a job runs on: ``train.device`` of training, ``--device`` of embed
and maps. Its own module so that every stage that runs a model chooses the device the
same way without importing the training code."""

from __future__ import annotations

import logging
import os
import socket

import torch

log = logging.getLogger("mmssl.device")


def cuda_facts() -> str:
    """What this process sees of CUDA, for errors and warnings about the device."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (f"node {socket.gethostname()}: torch.cuda.is_available()={torch.cuda.is_available()}, "
            f"torch.version.cuda={torch.version.cuda}"
            f"{' (a CPU-only torch build)' if torch.version.cuda is None else ''}, "
            f"CUDA_VISIBLE_DEVICES={'unset' if visible is None else repr(visible)}")


def select_device(name: str) -> torch.device:
    """'auto': CUDA when usable (the device SLURM gave the job), else CPU with a warning.
    'cuda' / 'cuda:N' without a usable CUDA device is an error at once, naming the node and
    what torch sees, instead of a GPU job silently training on CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        log.warning("train.device is 'auto' and CUDA is not usable; training on CPU (%s)", cuda_facts())
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"train.device is {name!r} but CUDA is not usable on {cuda_facts()}. Run the job "
                               "on a GPU node with a CUDA build of torch, or set train.device to 'auto' or 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"train.device is {name!r} but only {torch.cuda.device_count()} CUDA device(s) "
                               f"are visible on {cuda_facts()}")
    return device

