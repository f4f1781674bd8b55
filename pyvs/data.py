"""ImageNet data: a standard ``val/<wnid>/*.JPEG`` folder, or the compact
1000-image sample (``labels.csv`` + ``imagenet_sample_224/``)."""
from __future__ import annotations

import csv
import os
from typing import Optional

from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms
from torchvision.io import ImageReadMode, decode_image

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def eval_transform():
    """torchvision's ImageNet evaluation transform: resize 256, center crop 224."""
    return transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                               transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


class SampleImageNet(Dataset):
    """The compact sample: ``labels.csv`` (file, class_index, ...) beside
    ``imagenet_sample_224/``, images already resized to 256 and center-cropped
    to 224 (so only normalization is applied). Items: (float [3, 224, 224], int)."""

    def __init__(self, root: str):
        labels = os.path.join(root, "labels.csv")
        images = os.path.join(root, "imagenet_sample_224")
        if not os.path.isfile(labels) or not os.path.isdir(images):
            raise ValueError(f"{root!r} is not an ImageNet sample folder: it needs labels.csv and "
                             "imagenet_sample_224/")
        with open(labels, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"file", "class_index"} <= set(rows[0]):
            raise ValueError(f"{labels!r} must have the columns file,class_index")
        self.items = [(os.path.join(images, r["file"]), int(r["class_index"])) for r in rows]
        missing = [p for p, _ in self.items if not os.path.isfile(p)]
        if missing:
            raise ValueError(f"{len(missing)} images listed in {labels!r} are missing, e.g. {missing[0]!r}")
        self.normalize = transforms.Normalize(MEAN, STD)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        img = decode_image(path, mode=ImageReadMode.RGB).float() / 255.0
        return self.normalize(img), label


def imagenet_dataset(path: str, limit: Optional[int] = None) -> Dataset:
    """The dataset at ``path``: the compact sample (labels.csv present), an
    ImageNet root with ``val/``, or a ``val/`` folder itself (one
    sub-folder per WNID, sorted order = class index). ``limit`` keeps the
    first N images. A missing or malformed path is a ValueError."""
    if not os.path.isdir(path):
        raise ValueError(f"data path {path!r} does not exist or is not a folder")
    if os.path.isfile(os.path.join(path, "labels.csv")):
        ds: Dataset = SampleImageNet(path)
    else:
        root = os.path.join(path, "val") if os.path.isdir(os.path.join(path, "val")) else path
        try:
            ds = datasets.ImageFolder(root, transform=eval_transform())
        except (FileNotFoundError, RuntimeError) as e:
            raise ValueError(f"{root!r} is neither the ImageNet sample (labels.csv) nor an ImageFolder "
                             f"of val/<wnid>/*.JPEG: {e}") from None
        if len(ds.classes) != 1000:
            raise ValueError(f"{root!r} has {len(ds.classes)} class folders; ImageNet val has 1000 "
                             "(the class index is the position of the WNID in sorted order)")
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        ds = Subset(ds, range(min(limit, len(ds))))
    return ds


def loader(ds: Dataset, batch_size: int = 50, workers: int = 0) -> DataLoader:
    """In order, never shuffled: image i of the dataset is global image i."""
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)


def decoded(ds: Dataset, batch_size: int = 50):
    """All images decoded once, as a list of (float [B, 3, 224, 224], int64 [B])."""
    return [(x, y) for x, y in loader(ds, batch_size)]
