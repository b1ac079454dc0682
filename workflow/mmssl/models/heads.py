"""Projection heads (paper 3.3): identity for z, a two-layer 1x1 convolution for the
locations of c with hidden width equal to the latent size. The authors' code uses a
residual 1x1 block for c and an MLP for z; ``kind="code"`` selects those instead.
"""

from __future__ import annotations

import torch
from torch import nn

from mmssl.models.encoders import batchnorm_layer, conv_layer, init_weights


class LocalHead(nn.Module):
    """Paper head. c: (B, C_c, *S) -> (B, latent, *S)."""

    def __init__(self, in_channels: int, latent: int, dims: int) -> None:
        super().__init__()
        conv = conv_layer(dims)
        self.net = nn.Sequential(conv(in_channels, latent, 1), nn.ReLU(), conv(latent, latent, 1))
        init_weights(self)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.net(c)


class ResidualLocalHead(nn.Module):
    """Authors'-code head: 1x1 conv path plus a near-identity 1x1 shortcut, then BN."""

    def __init__(self, in_channels: int, latent: int, dims: int) -> None:
        super().__init__()
        conv, bn = conv_layer(dims), batchnorm_layer(dims)
        self.path = nn.Sequential(conv(in_channels, latent, 1), bn(latent), nn.ReLU(), conv(latent, latent, 1))
        self.shortcut = conv(in_channels, latent, 1)
        self.norm = bn(latent)
        init_weights(self)
        # start the shortcut close to an identity map on the first min(in, latent) channels
        with torch.no_grad():
            self.shortcut.weight.mul_(0.01)
            for i in range(min(in_channels, latent)):
                self.shortcut.weight.view(latent, in_channels, -1)[i, i, :] += 1.0

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.norm(self.path(c) + self.shortcut(c))


def build_local_head(kind: str, in_channels: int, latent: int, dims: int) -> nn.Module:
    """``kind``: ``"paper"`` (two 1x1 convs) or ``"code"`` (authors' residual block)."""
    if kind == "paper":
        return LocalHead(in_channels, latent, dims)
    if kind == "code":
        return ResidualLocalHead(in_channels, latent, dims)
    raise ValueError(f"unknown head kind {kind!r}; expected 'paper' or 'code'")


def build_latent_head(kind: str, latent: int) -> nn.Module:
    """Head for z: identity (paper) or Linear-ReLU-Linear (authors' code)."""
    if kind == "paper":
        return nn.Identity()
    if kind == "code":
        mlp = nn.Sequential(nn.Linear(latent, latent), nn.ReLU(), nn.Linear(latent, latent))
        init_weights(mlp)
        return mlp
    raise ValueError(f"unknown head kind {kind!r}; expected 'paper' or 'code'")
