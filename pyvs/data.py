"""ImageNet data: a standard ``val/<wnid>/*.JPEG`` folder (all 1000 classes
or a subset), or any folder with a ``labels.csv`` (``file,class_index``)
such as the compact 1000-image sample (``imagenet_sample_224/``).

Every image gets torchvision's evaluation transform (resize the shorter side
to 256, center-crop 224), unless it already is 224x224, and is kept as uint8
[3, 224, 224] (150 kB: the 50,000 images of ImageNet val take 7.5 GB);
:func:`normalize` turns a batch into the float input a model expects, on
whatever device the batch is.
"""
from __future__ import annotations

import csv
import os
import re
from typing import List, Optional, Tuple

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from .checks import integer

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE, RESIZE = 224, 256  # evaluation crop and the shorter side before it, pixels
_EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPEG", ".JPG", ".PNG")


def imagenet_wnids() -> List[str]:
    """The 1000 ILSVRC-2012 class WNIDs in class-index order (sorted)."""
    with open(os.path.join(os.path.dirname(__file__), "imagenet_wnids.txt")) as f:
        return [line.strip() for line in f if line.strip()]


def load_image(path: str) -> torch.Tensor:
    """One image as uint8 [3, 224, 224]: decoded as RGB, then resized (shorter
    side 256, bilinear with antialiasing) and center-cropped unless it already
    is 224x224. An unreadable file is a ValueError naming it."""
    try:
        with open(path, "rb") as f:
            data = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
        img = decode_image(data, mode=ImageReadMode.RGB)
    except (OSError, RuntimeError, ValueError) as e:
        # torchvision prefixes its messages with the C++ source location: keep the reason
        why = re.sub(r"^\w+, \S+:\d+, ", "", (str(e).splitlines() or [type(e).__name__])[0])
        raise ValueError(f"cannot read image {path!r}: {why}") from None
    if img.dtype == torch.uint16:  # a 16-bit PNG: its top 8 bits are the 8-bit image
        img = (img.to(torch.int32) >> 8).to(torch.uint8)
    elif img.dtype != torch.uint8:
        raise ValueError(f"cannot read image {path!r}: {img.dtype} pixels (8- or 16-bit images only)")
    if tuple(img.shape[1:]) != (SIZE, SIZE):
        img = TF.center_crop(TF.resize(img, [RESIZE], antialias=True), [SIZE, SIZE])
    return img


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 images [B, 3, H, W] -> float32 model input, (x / 255 - mean) / std
    per channel (as torchvision's ToTensor and Normalize compute it). Float
    batches pass unchanged."""
    if x.dtype != torch.uint8:
        return x
    mean = torch.tensor(MEAN, dtype=torch.float32, device=x.device).view(3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return x.to(torch.float32).div_(255.0).sub_(mean).div_(std)


class ImageList(Dataset):
    """(path, class index) pairs; items: (uint8 [3, 224, 224], int)."""

    def __init__(self, items: List[Tuple[str, int]]):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        return load_image(path), label


def _labelled_folder(root: str) -> ImageList:
    """A folder with labels.csv (file, class_index): images beside it, or in
    imagenet_sample_224/ (the compact sample)."""
    labels = os.path.join(root, "labels.csv")
    images = os.path.join(root, "imagenet_sample_224")
    images = images if os.path.isdir(images) else root
    try:
        with open(labels, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except UnicodeDecodeError as e:
        raise ValueError(f"{labels!r} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not rows or not {"file", "class_index"} <= set(rows[0]):
        raise ValueError(f"{labels!r} must have the columns file,class_index")
    try:
        items = [(_inside(images, r["file"], labels), integer(int(r["class_index"]), "class_index", 0, 999))
                 for r in rows]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{labels!r}: {e}" if "outside" in str(e) else
                         f"{labels!r}: a class_index is not an integer in [0, 999] ({e})") from None
    missing = [p for p, _ in items if not os.path.isfile(p)]
    if missing:
        raise ValueError(f"{len(missing)} images listed in {labels!r} are missing, e.g. {missing[0]!r}")
    return ImageList(items)


def _inside(folder: str, name, labels: str) -> str:
    """The path of a file labels.csv names, which must lie inside ``folder``."""
    if not isinstance(name, str) or not name:
        raise ValueError("a row has no file name")
    path = os.path.realpath(os.path.join(folder, name))
    if os.path.commonpath([path, os.path.realpath(folder)]) != os.path.realpath(folder):
        raise ValueError(f"the file {name!r} lies outside the data folder")
    return os.path.join(folder, name)


def _wnid_folder(root: str) -> ImageList:
    """val/<wnid>/*.JPEG with all 1000 classes or a subset: the class index is
    the WNID's position among ImageNet's 1000."""
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    unknown = [c for c in classes if c not in index]
    if not classes or unknown:
        raise ValueError(f"{root!r} is neither an ImageNet sample (labels.csv) nor a folder of "
                         f"val/<wnid>/*.JPEG" + (f": {unknown[:3]} are not ImageNet WNIDs" if unknown else ""))
    items = [(os.path.join(root, c, f), index[c]) for c in classes
             for f in sorted(os.listdir(os.path.join(root, c))) if f.endswith(_EXTENSIONS)]
    if not items:
        raise ValueError(f"{root!r} holds no images")
    return ImageList(items)


def imagenet_dataset(path: str, limit: Optional[int] = None) -> Dataset:
    """The dataset at ``path``: a folder with labels.csv, an ImageNet root
    with ``val/``, or a ``val/`` folder itself. ``limit`` keeps the first N
    images. A missing or malformed path is a ValueError."""
    if not os.path.isdir(path):
        raise ValueError(f"data path {path!r} does not exist or is not a folder")
    if os.path.isfile(os.path.join(path, "labels.csv")):
        ds = _labelled_folder(path)
    else:
        ds = _wnid_folder(os.path.join(path, "val") if os.path.isdir(os.path.join(path, "val")) else path)
    if limit is not None:
        ds = Subset(ds, range(min(integer(limit, "limit", 1), len(ds))))
    return ds


def image_list(ds: Dataset) -> List[Tuple[str, int]]:
    """The (path, class index) of every image of a dataset from
    :func:`imagenet_dataset`, in order."""
    if isinstance(ds, Subset):
        return [image_list(ds.dataset)[i] for i in ds.indices]
    return list(ds.items)


def loader(ds: Dataset, batch_size: int = 50, workers: int = 0) -> DataLoader:
    """In order, never shuffled: image i of the dataset is global image i."""
    return DataLoader(ds, batch_size=integer(batch_size, "batch_size", 1), shuffle=False,
                      num_workers=integer(workers, "workers", 0))


def decoded(ds: Dataset, batch_size: int = 50, workers: int = 0, progress: bool = False):
    """All images decoded once, as a list of (uint8 [B, 3, 224, 224], int64 [B])."""
    with tqdm(total=len(ds), desc="decoding images", unit="img", disable=not progress, leave=False) as bar:
        out = []
        for x, y in loader(ds, batch_size, workers):
            out.append((x, y))
            bar.update(len(y))
    return out
