"""Classify image files with a trained checkpoint (`scripts/predict.py RUN IMAGES...`): each image
goes through the checkpoint's own preprocessing — converted to its channels, resized (short side,
then the centre) to its input size, normalised with its stored statistics."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from dlcourse.errors import DataError


def preprocess(path: Path | str, image_shape: tuple[int, int, int], mean: list[float], std: list[float]) -> torch.Tensor:
    """The image file `path` as the model's input [C, H, W] (normalised)."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import v2

    c, h, w = image_shape
    try:
        with Image.open(path) as img:
            img = img.convert("L" if c == 1 else "RGB")
            x = v2.Compose([v2.Resize(min(h, w)), v2.CenterCrop((h, w)), v2.ToImage(),
                            v2.ToDtype(torch.float32, scale=True)])(img)
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"Cannot read the image {path}: {e}. Give PNG or JPEG files.") from None
    x = x.as_subclass(torch.Tensor)
    return (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


@torch.inference_mode()
def predict(run: Path | str, images: list[Path | str], top_k: int = 3, device: str = "cpu") -> list[dict]:
    """Top-k classes with probabilities for each image file."""
    from dlcourse.evaluate import load_model

    model, ckpt, _, _ = load_model(run, device)
    norm, shape, classes = ckpt["normalization"], tuple(ckpt["image_shape"]), list(ckpt["classes"])
    batch = torch.stack([preprocess(p, shape, norm["mean"], norm["std"]) for p in images])
    probs = F.softmax(model(batch.to(next(model.parameters()).device)).float(), dim=1).cpu()
    k = min(top_k, len(classes))
    top = probs.topk(k, dim=1)
    return [{"image": str(path), "top": [{"class": classes[int(i)], "index": int(i), "probability": float(p)}
                                         for p, i in zip(values, indices)]}
            for path, values, indices in zip(images, top.values, top.indices)]
