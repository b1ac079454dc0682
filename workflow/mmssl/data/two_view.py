"""Two-View MNIST (paper 3.1.1, after Wang et al. 2015).

Intensities are scaled to [0, 1] and digits resized to 32x32. View 1 rotates the digit by
an angle drawn uniformly from [-pi/4, pi/4]; view 2 adds unit uniform noise and rescales
the intensities to [0, 1] again. Views are drawn once per sample from a seeded generator
and stored, so every fold and every method sees the same views.
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


def make_views(images: np.ndarray, seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """images (N, 28, 28) uint8 -> view1, view2 (N, 1, 32, 32) float32 and the angles (N,)."""
    gen = torch.Generator().manual_seed(seed)
    x = to_unit_32(images)
    angles = (torch.rand(len(x), generator=gen) * 2 - 1) * (math.pi / 4)
    view1 = rotate(x, angles).clamp_(0.0, 1.0)
    view2 = rescale_unit(x + torch.rand(x.shape, generator=gen))
    return view1, view2, angles.numpy()


def build_two_view_store(digits: Digits, out_dir: str | Path, seed: int) -> Path:
    """Write the Two-View MNIST store (sources view1, view2) for ``digits``."""
    view1, view2, angles = make_views(digits.images, seed)
    ids = np.array([f"{p}{i:05d}" for i, p in enumerate(digits.pool)])
    index = pd.DataFrame(
        {"sample": ids, "subject": ids, "label": digits.labels, "pool": digits.pool, "angle": angles.round(5)}
    )
    arrays = {"view1": view1.numpy(), "view2": view2.numpy()}
    return write_store(out_dir, index, arrays, SOURCES)
