"""Batched per-image augmentation, mixup/cutmix, the presets and the image-folder pipeline."""
from __future__ import annotations

import functools

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from conftest import CONFIGS, compose_config
from dlcourse.data.augment import (OFF, augment_seed, build_augmentation, check_options, folder_transforms,
                                   padding_pixels, sample_beta)
from dlcourse.data.loader import Normalize, TensorLoader
from dlcourse.errors import ConfigError

CPU = torch.device("cpu")
PRESETS = ("none", "flip", "crop", "standard", "strong")


@functools.lru_cache(maxsize=None)
def _composed(name: str) -> str:
    return OmegaConf.to_yaml(compose_config([f"augment={name}"]).augment)


def preset(name: str) -> dict:
    """configs/augment/<name>.yaml as composed by Hydra (the train config with augment=<name>)."""
    return OmegaConf.to_container(OmegaConf.create(_composed(name)), resolve=True)


def build(seed: int = 0, num_classes: int = 10, **options):
    return build_augmentation(num_classes, CPU, seed, **options)


def images(n: int = 16, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


# presets and options ---------------------------------------------------------------------------
def test_presets_have_the_full_key_set_and_compose_with_overrides():
    for name in PRESETS:
        assert set(preset(name)) == set(OFF), name
    assert preset("standard")["hflip"] == 0.5 and preset("standard")["crop_padding"] == 0.125
    assert preset("strong")["resized_crop_scale"] == [0.08, 1.0]
    cfg = compose_config(["augment=none", "augment.hflip=0.5", "augment.mixup_alpha=0.2"])
    assert cfg.augment.hflip == 0.5 and cfg.augment.mixup_alpha == 0.2
    with pytest.raises(ConfigCompositionException):
        compose_config(["augment=flip", "augment.no_such_key=1"])
    for name in PRESETS:
        first = (CONFIGS / "augment" / f"{name}.yaml").read_text().splitlines()[0]
        assert first.startswith("# "), f"{name}.yaml should start with a comment saying what it does"


def test_none_preset_is_identity():
    aug = build(**preset("none"))
    assert aug.transform is None and aug.batch_transform is None and str(aug) == "none"
    assert isinstance(aug.generator, torch.Generator) and aug.generator.device == CPU


def test_unknown_key_names_it_and_lists_the_allowed_ones():
    with pytest.raises(ConfigError) as e:
        build(hflip=0.5, horizontal_flip=0.5)
    msg = str(e.value)
    assert "augment.horizontal_flip" in msg and "augment.hflip" in msg and "augment.cutmix_alpha" in msg


@pytest.mark.parametrize("key,value", [
    ("hflip", 1.5), ("erasing", -0.1), ("hflip", True), ("crop_padding", -1), ("crop_padding", 2.5),
    ("resized_crop_scale", [0.5, 0.1]), ("resized_crop_scale", [0.0, 1.0]), ("resized_crop_scale", 0.5),
    ("brightness", -0.2), ("rotation", 200), ("mixup_alpha", -1), ("contrast", "high")])
def test_invalid_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"augment\.{key}="):
        check_options({key: value})


def test_crop_padding_fraction_scales_with_the_image():
    assert [padding_pixels(0.125, s) for s in (32, 28, 8, 224)] == [4, 4, 1, 28]
    assert padding_pixels(4, 28) == 4


# the per-image transform ------------------------------------------------------------------------
@pytest.mark.parametrize("name", PRESETS[1:])
@pytest.mark.parametrize("shape", [(8, 3, 32, 32), (8, 1, 28, 28), (5, 3, 20, 30)])
def test_output_shape_dtype_range_and_input_untouched(name, shape):
    aug = build(**preset(name))
    x = images(*shape)
    before = x.clone()
    out = aug.transform(x)
    assert out.shape == x.shape and out.dtype == torch.float32 and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(x, before)


def test_same_seed_same_output_different_seed_different_output_and_exact_resume():
    x = images(32)
    a, b, c = (build(seed=s, **preset("strong")) for s in (1, 1, 2))
    assert torch.equal(a.transform(x), b.transform(x))
    assert not torch.equal(a.transform(x), c.transform(x))
    state = a.generator.get_state()  # what a checkpoint stores
    expected = a.transform(x)
    a.generator.set_state(state)
    assert torch.equal(a.transform(x), expected)
    assert augment_seed(0) != 0  # not the loader's shuffling stream, which is seeded with the run seed


def test_random_draws_use_only_the_augmentation_generator():
    x = images(16)
    aug = build(**{**preset("strong"), "mixup_alpha": 0.2, "cutmix_alpha": 1.0})
    global_state = torch.get_rng_state()
    aug.transform(x)
    aug.batch_transform(x, torch.zeros(16, dtype=torch.long))
    assert torch.equal(torch.get_rng_state(), global_state)


def test_hflip_is_per_image_and_mirrors():
    x = images(1, 3, 8, 8).expand(64, 3, 8, 8).contiguous()
    out = build(hflip=0.5).transform(x)
    flipped = torch.tensor([torch.equal(o, x[0].flip(-1)) for o in out])
    kept = torch.tensor([torch.equal(o, x[0]) for o in out])
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54
    assert torch.equal(build(hflip=1.0).transform(x), x.flip(-1))


def test_crop_with_padding_shifts_content_and_fills_zeros():
    pad = 3
    x = images(32, 1, 10, 10) + 0.01  # no zeros in the input
    out = build(crop_padding=pad).transform(x)
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    shifts = []
    for i in range(len(x)):  # each output is one (2 pad + 1)^2 crop of the zero-padded image
        hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                if torch.equal(out[i], padded[i, :, dy:dy + 10, dx:dx + 10])]
        assert len(hits) == 1
        shifts.append(hits[0])
    assert len(set(shifts)) > 5  # per-image offsets
    assert (out == 0).any()  # some pixels come from the zero padding


def test_resized_crop_full_scale_is_identity_and_small_scale_zooms():
    x = images(8, 3, 16, 16)
    assert torch.allclose(build(resized_crop_scale=[1.0, 1.0]).transform(x), x, atol=1e-5)
    aug = build(resized_crop_scale=[0.1, 0.1])
    top, left, h, w = aug.transform._crop_boxes(256, 32, 32, CPU)
    assert ((h * w / 1024 - 0.1).abs() < 0.02).all()
    assert (top >= 0).all() and (top + h <= 32).all() and (left >= 0).all() and (left + w <= 32).all()
    zoomed = aug.transform(x)
    assert (zoomed[..., 1:] - zoomed[..., :-1]).abs().mean() < (x[..., 1:] - x[..., :-1]).abs().mean() / 2


def test_rotation_keeps_the_centre_and_cuts_corners():
    x = torch.ones(64, 1, 21, 21)
    out = build(rotation=45).transform(x)
    assert torch.allclose(out[:, :, 10, 10], torch.ones(64, 1))
    corner = out[:, 0, 0, 0]
    assert (corner < 0.5).any() and not (corner < 0.5).all()  # per-image angles in [-45, 45]
    assert torch.allclose(build(rotation=1e-6).transform(images(4)), images(4), atol=1e-4)


def test_erasing_zeros_one_box_per_erased_image():
    x = torch.ones(64, 3, 32, 32)
    out = build(erasing=0.5).transform(x)
    erased = 0
    for img in out:
        zero = img[0] == 0
        assert torch.equal(zero, (img == 0).all(0))  # the same box in every channel
        if zero.any():
            erased += 1
            rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
            box = zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
            assert box.all() and int(zero.sum()) == box.numel()  # a filled rectangle
            assert 0.01 < box.numel() / 1024 < 0.4
    assert 15 < erased < 50


def test_jitter_changes_statistics_as_torchvision_does():
    from torchvision.transforms.v2 import functional as TF

    n, options = 6, dict(brightness=0.4, contrast=0.5, saturation=0.6)
    for c in (3, 1):
        x = images(n, c, 16, 16)
        out = build(seed=3, **options).transform(x)
        assert not torch.allclose(out.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-3)
        # the same per-image factors, drawn in the same order, through torchvision's ColorJitter ops
        g = torch.Generator().manual_seed(augment_seed(3))
        fb, fc, fs = (torch.rand(n, 1, 1, 1, generator=g).flatten() * 2 * v + 1 - v for v in (0.4, 0.5, 0.6))
        for i in range(n):
            ref = TF.adjust_contrast(TF.adjust_brightness(x[i], float(fb[i])), float(fc[i]))
            if c == 3:
                ref = TF.adjust_saturation(ref, float(fs[i]))
            assert torch.allclose(out[i], ref, atol=1e-5)


def test_transform_in_the_tensor_loader():
    uint8 = torch.randint(0, 256, (50, 3, 12, 12), dtype=torch.uint8)
    aug = build(**preset("standard"))
    loader = TensorLoader(uint8, torch.arange(50) % 10, 16, device=CPU, shuffle=True,
                          normalize=Normalize(torch.full((3,), 0.5), torch.full((3,), 0.25), CPU),
                          generator=torch.Generator().manual_seed(0), transform=aug.transform)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [16, 16, 16, 2] and batches[0][0].shape == (16, 3, 12, 12)


# mixup and cutmix -------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [dict(mixup_alpha=0.4), dict(cutmix_alpha=1.0),
                                     dict(mixup_alpha=0.4, cutmix_alpha=1.0)])
def test_mix_targets_are_convex_combinations_matching_the_pixels(options):
    n = 32
    aug = build(num_classes=n, **options)
    assert aug.transform is None
    labels = torch.arange(n)  # image i has class i and every pixel equal to i
    x = labels.float().view(n, 1, 1, 1).expand(n, 3, 16, 16).contiguous()
    mixed, targets = aug.batch_transform(x, labels)
    assert mixed.shape == x.shape and targets.shape == (n, n) and targets.dtype == torch.float32
    assert (targets >= 0).all() and torch.allclose(targets.sum(1), torch.ones(n))
    assert (targets > 0).sum(1).le(2).all()  # the image itself and its partner
    assert not (targets.max(1).values == 1).all()  # some images were mixed
    assert torch.allclose(mixed.mean((1, 2, 3)), targets @ labels.float(), atol=1e-4)
    if "mixup_alpha" not in options:  # cutmix pastes pixels, it does not blend them
        assert torch.isin(mixed, labels.float()).all()


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_beta_sampler_moments(alpha):
    lam = sample_beta(alpha, 20000, torch.Generator().manual_seed(0), CPU)
    assert ((lam >= 0) & (lam <= 1)).all()
    assert abs(float(lam.mean()) - 0.5) < 0.01
    assert abs(float(lam.var()) - 1 / (4 * (2 * alpha + 1))) < 0.01


# image folders ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PRESETS)
def test_folder_transforms_give_the_image_size(name):
    from PIL import Image

    image = Image.fromarray(torch.randint(0, 256, (50, 70, 3), dtype=torch.uint8).numpy())
    for train in (True, False):
        out = folder_transforms(32, train=train, **preset(name))(image)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32 and 0 <= out.min() <= out.max() <= 1
    tensor = torch.randint(0, 256, (1, 40, 30), dtype=torch.uint8)
    assert folder_transforms(24, train=True, **preset(name))(tensor).shape == (1, 24, 24)
    with pytest.raises(ConfigError, match="augment.flip"):
        folder_transforms(32, train=True, flip=0.5)
