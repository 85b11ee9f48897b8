"""Image-folder datasets: `train/<class>/*`, `test/<class>/*` and optional `val/<class>/*`, as a directory
or a tar archive of one (read as a stream, nothing extracted), inside at most one wrapping folder.

This is how the shared CIFAR-10 (JPEG) tarball, CINIC-10 and many other datasets ship. All images must
share one size; grayscale images keep one channel unless the dataset mixes them with colour ones.
"""

import io
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.io import decode_jpeg

from ...errors import UserError
from ..splits import Splits
from .registry import DATASETS, Source, file_digest, require_path, stat_digest

SPLITS = ("train", "val", "test")
LAYOUT = "a folder or .tar(.gz) with train/<class>/<image> and test/<class>/<image> (optionally val/), " \
         "possibly inside one top-level folder"
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


@DATASETS.register("imagefolder")
def imagefolder(path: Path | None) -> Source:
    """Images in train/<class>/, test/<class>/ and optional val/<class>/, from a folder or a .tar(.gz)."""
    root = require_path("imagefolder", path, LAYOUT)
    if root.is_file():
        return Source("imagefolder", root, lambda: file_digest([root]), lambda: _build(_tar_members(root), root))
    # the key covers exactly the files decoded, so a stray file (or a cache) inside the folder changes nothing
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and _is_image(p.relative_to(root).as_posix())]
    return Source("imagefolder", root, lambda: stat_digest(root, files),
                  lambda: _build([(p.relative_to(root).as_posix(), p.read_bytes()) for p in files], root))


def _tar_members(archive: Path) -> list[tuple[str, bytes]]:
    """(name, bytes) of the image members, streamed: a gzip stream can't seek, and extracting would
    write 60k files only to read them back."""
    name = "(archive header)"
    members = []
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                name = member.name
                if member.isfile() and _is_image(name):
                    members.append((name, tar.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise UserError(f"{archive}: corrupt or truncated archive (at member {name}): {exc}") from None
    return members


def _is_image(name: str) -> bool:
    """An image file by extension, skipping hidden files (macOS `._*` forks, `.DS_Store`)."""
    return name.lower().endswith(IMG_EXTENSIONS) and not any(p.startswith(".") for p in PurePosixPath(name).parts)


def _build(members: list[tuple[str, bytes]], where: Path) -> Splits:
    by_split = _arrange(members, where)
    classes = sorted({cls for cls, _, _ in by_split["train"]})
    for split, items in by_split.items():  # one class order for all splits, so labels agree
        if extra := sorted({cls for cls, _, _ in items} - set(classes)):
            raise UserError(f"{where}: {split}/ has class {extra[0]!r} that train/ lacks; train classes: "
                            f"{', '.join(classes)}")
    items = [item for split in by_split.values() for item in split]
    images = _decode_all([(name, data) for _, name, data in items], where)
    index = {cls: i for i, cls in enumerate(classes)}
    labels = torch.tensor([index[cls] for cls, _, _ in items])
    counts = [len(v) for v in by_split.values()]
    # clones: views would keep the whole decoded block alive after the datamodule subsets train
    parts = {split: (x.clone(), y.clone())
             for split, x, y in zip(by_split, images.split(counts), labels.split(counts))}
    val_x, val_y = parts.get("val", (None, None))
    return Splits(*parts["train"], *parts["test"], classes, val_x, val_y)


def _arrange(members: list[tuple[str, bytes]], where: Path) -> dict[str, list[tuple[str, str, bytes]]]:
    """Image members grouped by split as sorted (class, name, bytes), after dropping one wrapping folder."""
    parts = [PurePosixPath(name).parts for name, _ in members]
    tops = {p[0] for p in parts if len(p) > 1}
    strip = 1 if len(tops) == 1 and not tops & set(SPLITS) else 0
    by_split = {split: [] for split in SPLITS}
    for p, (name, data) in zip(parts, members):
        p = p[strip:]
        if len(p) > 1 and p[0] in by_split:
            if len(p) != 3:
                raise UserError(f"{where}: {name} is not at <split>/<class>/<image>; expected {LAYOUT}")
            by_split[p[0]].append((p[1], name, data))
    if not by_split["train"] or not by_split["test"]:
        raise UserError(f"{where}: found no {'train' if not by_split['train'] else 'test'} images; expected {LAYOUT}")
    return {split: sorted(items) for split, items in by_split.items() if items}


def _decode_all(items: list[tuple[str, bytes]], where: Path) -> torch.Tensor:
    """N×C×H×W uint8; the first image fixes the size, and the first one that differs is named."""
    images = [decode_image(data, f"{where}: {name}") for name, data in items]
    size = images[0].shape[1:]
    for (name, _), image in zip(items, images):
        if image.shape[1:] != size:
            raise UserError(f"{where}: {name} is {image.shape[2]}×{image.shape[1]}, but {items[0][0]} is "
                            f"{size[1]}×{size[0]}; all images must share one size")
    if len({image.shape[0] for image in images}) > 1:  # some grayscale among colour: make them all colour
        images = [image.expand(3, -1, -1) for image in images]
    return torch.stack(images)


def decode_image(data: bytes, what: str) -> torch.Tensor:
    """C×H×W uint8 with C = 1 (grayscale) or 3; `what` names the file in the error."""
    if data[:3] == b"\xff\xd8\xff":  # JPEG: torchvision's libjpeg-turbo decodes ~4× faster than Pillow
        try:
            image = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8))
            if image.shape[0] in (1, 3):
                return image
        except RuntimeError:
            pass  # CMYK, progressive oddities, corrupt bytes: Pillow decides and words the error
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("L" if im.mode in GRAY_MODES else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"{what}: cannot decode image ({exc})") from None
    return torch.from_numpy(np.array(im).reshape(im.height, im.width, -1)).permute(2, 0, 1).contiguous()
