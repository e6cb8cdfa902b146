"""Data switches for the generalisation experiments: label noise, shuffled pixels, per-pixel
normalisation and balanced per-class subsets."""
from __future__ import annotations

import pytest
import torch

from conftest import compose_config
from dlcourse.builders import dataset_info, make_data
from dlcourse.data import read_dataset
from dlcourse.data.switches import corrupt_labels, per_class_indices, shuffle_pixels
from dlcourse.errors import ConfigError

CPU = torch.device("cpu")


def data_of(overrides):
    cfg = compose_config(overrides)
    return make_data(cfg, dataset_info(cfg), CPU)[0]


def all_labels(loader) -> torch.Tensor:
    return loader.labels


def test_label_noise_changes_exactly_the_fraction_and_is_fixed_by_the_split_seed():
    clean = data_of(["dataset.val_split=0.1"])
    noisy = data_of(["dataset.val_split=0.1", "dataset.label_noise=0.3"])
    again = data_of(["dataset.val_split=0.1", "dataset.label_noise=0.3", "seed=7"])
    changed = (all_labels(clean.train) != all_labels(noisy.train))
    assert changed.sum().item() == round(0.3 * len(changed))
    assert torch.equal(all_labels(noisy.train), all_labels(again.train))  # the training seed does not redraw it
    assert torch.equal(all_labels(clean.val), all_labels(noisy.val)) and torch.equal(all_labels(clean.test),
                                                                                         all_labels(noisy.test))
    random_labels = corrupt_labels(torch.arange(10).repeat(10), torch.arange(100), 1.0, 10, 0)
    assert (random_labels != torch.arange(10).repeat(10)).all()


def test_shuffled_pixels_are_one_fixed_permutation():
    digits = read_dataset("digits")
    shuffled = shuffle_pixels(digits, 0)
    flat, sflat = digits.train_images.flatten(1).float(), shuffled.train_images.flatten(1).float()
    assert torch.equal(flat.sort(1).values, sflat.sort(1).values)  # the same pixel values per image
    perm = torch.randperm(28 * 28, generator=torch.Generator().manual_seed(2_000_003))  # the module's stream
    assert torch.equal(sflat, flat[:, perm]) and torch.equal(shuffled.test_images.flatten(1), digits.test_images.flatten(1)[:, perm])
    assert torch.equal(shuffle_pixels(digits, 0).train_images, shuffled.train_images)
    assert not torch.equal(shuffle_pixels(digits, 1).train_images, shuffled.train_images)


def test_per_pixel_normalisation_gives_zero_mean_unit_std_per_pixel():
    data = data_of(["dataset.normalize=per_pixel", "dataset.val_split=0"])
    x = torch.cat([x for x, _ in data.train])
    varying = data.normalize.std.flatten() > 1e-3  # constant border pixels stay as they are
    mean, std = x.mean(0).flatten()[varying], x.std(0).flatten()[varying]
    assert mean.abs().max() < 1e-4 and (std - 1).abs().max() < 1e-3
    none = data_of(["dataset.normalize=none"])
    xb, _ = next(iter(none.test))
    assert xb.min() >= 0 and xb.max() <= 1


def test_per_class_keeps_a_balanced_subset():
    data = data_of(["dataset.per_class=20", "dataset.val_split=0"])
    counts = torch.bincount(all_labels(data.train), minlength=10)
    assert counts.tolist() == [20] * 10
    with pytest.raises(ConfigError, match="dataset.per_class=1000"):
        per_class_indices(read_dataset("digits").train_labels, 1000)


def test_switches_are_refused_where_they_cannot_apply(tmp_path):
    from conftest import train

    with pytest.raises(ConfigError, match="dataset.shuffle_pixels=true permutes image pixels"):
        train(tmp_path / "r", ["dataset=moons", "dataset.shuffle_pixels=true"])
    with pytest.raises(ConfigError, match="dataset.label_noise=0.2 works on class labels; dataset=sine is a regression"):
        train(tmp_path / "t", ["dataset=sine", "dataset.label_noise=0.2"])
    with pytest.raises(ConfigError, match="dataset.normalize"):
        train(tmp_path / "s", ["dataset.normalize=zscore"])
