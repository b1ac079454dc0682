"""Two-View MNIST (paper 3.1.1, after Wang et al. 2015).

Intensities are scaled to [0, 1] and digits resized to 32x32. View 1 rotates the digit by
an angle drawn uniformly from [-pi/4, pi/4]; view 2 adds unit uniform noise and rescales
the intensities to [0, 1] again.

``views: redraw`` (the default, as the authors' transforms do): the training rows' views are
drawn anew at every access (:func:`redraw_views`, from the training run's seeded generator,
so a run is reproducible and resumes exactly); validation and test views are drawn once
per sample from ``view_seed`` and stored, so every method is evaluated on the same views.
``views: fixed``: the stored views serve training too (every epoch sees the same pair).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mmssl.data.mnist import Digits
from mmssl.data.store import write_store
from mmssl.types import SourceSpec

SIZE = 32
SOURCES = [SourceSpec("view1", 1, SIZE, 2), SourceSpec("view2", 1, SIZE, 2)]


def to_unit_32(images: np.ndarray) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, 32, 32) float32 in [0, 1] (bilinear resize)."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0).unsqueeze(1)
    return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each image of x (N, 1, H, W) by its angle (N,) in radians about the centre;
    pixels entering from outside are 0 (background)."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rescale_unit(x: torch.Tensor) -> torch.Tensor:
    """Min-max rescale each image of (N, C, H, W) to [0, 1]."""
    flat = x.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    return ((flat - lo[:, None]) / (hi - lo).clamp_min(1e-8)[:, None]).view_as(x)


VIEWS = ("redraw", "fixed")


def draw_views(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (N, 1, 32, 32) digits in [0, 1] -> view1, view2 (N, 1, 32, 32) and the angles (N,),
    drawn from ``gen`` (a CPU generator): the one definition of the two views."""
    angles = (torch.rand(len(x), generator=gen) * 2 - 1) * (math.pi / 4)
    view1 = rotate(x, angles.to(x.device)).clamp_(0.0, 1.0)
    view2 = rescale_unit(x + torch.rand(x.shape, generator=gen).to(x.device))
    return view1, view2, angles


def make_views(images: np.ndarray, seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """images (N, 28, 28) uint8 -> view1, view2 (N, 1, 32, 32) float32 and the angles (N,)."""
    view1, view2, angles = draw_views(to_unit_32(images), torch.Generator().manual_seed(seed))
    return view1, view2, angles.numpy()


def redraw_views(xs: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A training batch with fresh views: ``xs["digit"]`` (B, 1, 32, 32), gathered from the
    store's extra array, is removed and view1 / view2 are drawn from it anew."""
    xs = dict(xs)
    view1, view2, _ = draw_views(xs.pop("digit").float(), gen)
    xs["view1"], xs["view2"] = view1.to(xs["view1"].dtype), view2.to(xs["view2"].dtype)
    return xs


def build_two_view_store(digits: Digits, out_dir: str | Path, seed: int, views: str) -> Path:
    """Write the Two-View MNIST store (sources view1, view2: the views drawn once from
    ``seed``) for ``digits``; with ``views: redraw`` also the digits themselves (extra array
    ``digit``), from which training redraws its views."""
    if views not in VIEWS:
        raise ValueError(f"views must be one of {list(VIEWS)}, got {views!r}")
    x = to_unit_32(digits.images)
    view1, view2, angles = draw_views(x, torch.Generator().manual_seed(seed))
    ids = np.array([f"{p}{i:05d}" for i, p in enumerate(digits.pool)])
    index = pd.DataFrame(
        {"sample": ids, "subject": ids, "label": digits.labels, "pool": digits.pool, "angle": angles.numpy().round(5)}
    )
    arrays = {"view1": view1.numpy(), "view2": view2.numpy()}
    if views == "fixed":
        return write_store(out_dir, index, arrays, SOURCES)
    return write_store(out_dir, index, arrays, SOURCES, extra={"digit": x.numpy()}, meta={"views": "redraw"})
