"""The augmentation options as a torchvision.transforms.v2 pipeline, for image folders read by a
DataLoader (the per-image randomness is seeded per image by dlcourse.data.folder)."""
from __future__ import annotations

from typing import Optional

import torch

from dlcourse.data.augment.batch import ERASING_RATIO, ERASING_SCALE, RESIZED_CROP_RATIO, padding_pixels
from dlcourse.data.augment.options import check_options


def folder_transforms(image_size: int, train: bool, resize_size: Optional[int] = None, **options):
    """torchvision.transforms.v2 pipeline for image folders (PIL image or uint8 tensor -> float
    [0, 1], not normalised): the per-image ops above, drawn by torchvision from the global RNG
    (seeded per DataLoader worker). Evaluation (train=False) resizes the short side to
    `resize_size` (default `image_size`) and crops the centre. Mixup/cutmix stay batch_transform's."""
    from torchvision.transforms import v2

    o = check_options(options)
    resize = [v2.Resize(resize_size or image_size, antialias=True), v2.CenterCrop(image_size)]
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if not train:
        return v2.Compose([*resize, *tail])
    ops = ([v2.RandomResizedCrop(image_size, scale=o["resized_crop_scale"], ratio=RESIZED_CROP_RATIO,
                                 antialias=True)] if o["resized_crop_scale"] else resize)
    ops.append(v2.ToImage())
    if o["rotation"]:
        ops.append(v2.RandomRotation(o["rotation"], interpolation=v2.InterpolationMode.BILINEAR))
    if o["crop_padding"]:
        ops.append(v2.RandomCrop(image_size, padding=padding_pixels(o["crop_padding"], image_size)))
    if o["hflip"]:
        ops.append(v2.RandomHorizontalFlip(o["hflip"]))
    if o["brightness"] or o["contrast"] or o["saturation"]:
        ops.append(v2.ColorJitter(brightness=o["brightness"] or None, contrast=o["contrast"] or None,
                                  saturation=o["saturation"] or None))
    ops.append(v2.ToDtype(torch.float32, scale=True))
    if o["erasing"]:
        ops.append(v2.RandomErasing(o["erasing"], scale=ERASING_SCALE, ratio=ERASING_RATIO, value=0))
    return v2.Compose(ops)
