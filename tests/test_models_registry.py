import pytest
import torch

from mmssl.models.encoders import DCGANEncoder, local_channels
from mmssl.types import SourceSpec
from mmssl.models.heads import build_local_head
from mmssl.objectives import available_methods, build_method, check_method_name, contrastive_names


@pytest.mark.parametrize("size,dims,c_channels", [(32, 2, 64), (64, 3, 128), (32, 3, 64)])
def test_encoder_shapes_follow_dcgan(size, dims, c_channels):
    enc = DCGANEncoder(SourceSpec("x", 1, size, dims), latent=64, width=32)
    x = torch.randn(2, 1, *(size,) * dims)
    z, c = enc(x)
    assert z.shape == (2, 64)
    assert c.shape == (2, c_channels) + (8,) * dims  # locations from the side-8 layer
    assert enc.local_channels == c_channels == local_channels(size, 32)


def test_local_features_are_raw_conv_output_before_batchnorm():
    enc = DCGANEncoder(SourceSpec("x", 1, 32, 2), latent=64, width=32).train()
    captured = {}
    enc.convs[1].register_forward_hook(lambda m, i, o: captured.setdefault("conv", o))
    _, c = enc(torch.randn(4, 1, 32, 32))
    assert torch.equal(c, captured["conv"])
    assert c.min() < 0  # no LeakyReLU applied (it would shrink negatives, not keep them)


def test_three_channel_source_and_bad_size():
    z, _ = DCGANEncoder(SourceSpec("svhn", 3, 32), latent=64, width=32)(torch.randn(2, 3, 32, 32))
    assert z.shape == (2, 64)
    with pytest.raises(ValueError, match="power of two"):
        DCGANEncoder(SourceSpec("x", 1, 28), latent=64, width=32)


def test_paper_head_is_two_1x1_convs_with_latent_hidden_width():
    head = build_local_head("paper", 64, 64, 2)
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(64, 64, (1, 1)), (64, 64, (1, 1))]


def test_registry_builds_all_fifteen_names():
    names = contrastive_names()
    assert len(names) == 15 == len(set(names))
    assert names[0] == "L" and names[-1] == "L-CL-CS-S"
    specs = [SourceSpec("a", 1, 32), SourceSpec("b", 1, 32)]
    for name in names:
        m = build_method(name, specs, {"width": 4})
        assert tuple(name.split("-")) == m.parts
    assert set(names) <= set(available_methods())


@pytest.mark.parametrize("bad", ["CL-L", "L-L", "X", "", "l-cl", "L--S"])
def test_registry_rejects_bad_names(bad):
    with pytest.raises(ValueError, match="unknown method"):
        check_method_name(bad)


def test_heads_are_per_source_not_shared():
    m = build_method("L-CL", [SourceSpec("a", 1, 32), SourceSpec("b", 1, 32)])
    assert m.local_heads["a"] is not m.local_heads["b"]
    pa = {id(p) for p in m.local_heads["a"].parameters()}
    assert not pa & {id(p) for p in m.local_heads["b"].parameters()}
