import torch

from mmssl.augment import AugmentSettings, augment, random_flip, random_pad_crop


def pair(b=6, size=16):
    x = torch.arange(b * size**3, dtype=torch.float32).view(b, 1, size, size, size)
    return {"T1w": x, "fALFF": -x}


def test_pad_crop_keeps_shape_and_pairs_aligned():
    xs = pair()
    out = random_pad_crop(xs, pad=3, gen=torch.Generator().manual_seed(0))
    assert out["T1w"].shape == xs["T1w"].shape
    assert torch.equal(out["fALFF"], -out["T1w"])  # the same crop for both modalities
    # every crop is a shifted copy: non-zero voxels keep their original neighbours
    assert not torch.equal(out["T1w"], xs["T1w"])


def test_crop_offset_is_a_pure_shift():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4, 4] = 1.0
    out = random_pad_crop({"a": x}, pad=2, gen=torch.Generator().manual_seed(3))["a"]
    assert out.sum() == 1.0  # a shift by at most pad keeps the bright voxel inside
    (i, j) = torch.nonzero(out[0, 0])[0].tolist()
    assert abs(i - 4) <= 2 and abs(j - 4) <= 2


def test_flip_is_shared_and_probability_respected():
    xs = pair(b=400, size=4)
    out = random_flip(xs, 0.5, torch.Generator().manual_seed(1))
    flipped = (out["T1w"] != xs["T1w"]).flatten(1).any(1)
    assert 0.4 < flipped.float().mean() < 0.6
    assert torch.equal(out["fALFF"], -out["T1w"])
    assert torch.equal(out["T1w"][flipped], xs["T1w"][flipped].flip(2))


def test_augmentation_is_reproducible_by_seed():
    s = AugmentSettings(pad=2, flip=0.5)
    a = augment(pair(), s, torch.Generator().manual_seed(7))
    b = augment(pair(), s, torch.Generator().manual_seed(7))
    c = augment(pair(), s, torch.Generator().manual_seed(8))
    assert torch.equal(a["T1w"], b["T1w"]) and not torch.equal(a["T1w"], c["T1w"])
