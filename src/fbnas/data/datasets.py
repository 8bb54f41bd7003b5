"""Named image datasets held in memory as uint8 tensors (small datasets: Fashion-MNIST, CIFAR-10, image folders).

Keeping the whole set as one uint8 tensor lets the loader crop, flip and normalize whole batches at once
instead of paying Python overhead per sample.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from fbnas.errors import DataError

DATASETS = ("fashion-mnist", "cifar10", "imagefolder", "synthetic")
DEFAULT_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# per-channel statistics of the training sets (in [0, 1] units); the test split is normalized with these too
FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class ImageTensors:
    """A whole split in memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,).

    ``mean``/``std`` are per-channel floats in [0, 1] units, the training set's statistics.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, n: int | None) -> ImageTensors:
        """The first ``n`` samples (for quick runs and tests); ``None`` keeps all."""
        if n is None or n >= len(self):
            return self
        return ImageTensors(self.images[:n], self.labels[:n], self.num_classes, self.mean, self.std, self.name,
                            self.classes)

    def resized(self, size: int, chunk: int = 4096) -> ImageTensors:
        """The split downsampled to ``size`` x ``size`` (bilinear, antialiased), e.g. to train an architecture at
        the input resolution a search chose for it."""
        if size == self.image_size:
            return self
        out = torch.empty((len(self), self.channels, size, size), dtype=torch.uint8)
        for i in range(0, len(self), chunk):
            x = self.images[i:i + chunk].float()
            y = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                                align_corners=False)
            out[i:i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
        return ImageTensors(out, self.labels, self.num_classes, self.mean, self.std, self.name, self.classes)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, train: bool = True,
                 image_size: int | None = None) -> ImageTensors:
    """Load split ``train``/test of a named dataset into memory.

    - ``fashion-mnist``: the four IDX files (gzip or raw) in ``data_dir``, ``$FBNAS_DATA`` or
      /usr/share/datasets/fashion-mnist.
    - ``cifar10``: the python-pickle batch folder (``data_batch_1..5``, ``test_batch``).
    - ``imagefolder``: ``data_dir/{train,test|val}/<class>/*.png``; square images of any size, resized to
      ``image_size`` (default 32); a non-square image is refused (resizing would stretch it).
    - ``synthetic``: 2048 / 512 generated one-channel images of ``image_size`` (default 28), each class a fixed
      pattern over noise: learnable in a few steps, for tests and examples that must not need a download.

    Raises :class:`DataError` naming the file or folder when something is missing, truncated or inconsistent.
    """
    if name == "fashion-mnist":
        return _load_fashion_mnist(_fashion_mnist_dir(data_dir), train)
    if name == "cifar10":
        return _load_cifar10(_required_dir(name, data_dir), train)
    if name == "imagefolder":
        return _load_imagefolder(_required_dir(name, data_dir), train, image_size or 32)
    if name == "synthetic":
        return synthetic_dataset(train, image_size or 28)
    raise DataError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")


def synthetic_dataset(train: bool, size: int = 28, num_classes: int = 10) -> ImageTensors:
    """Deterministic uint8 images: class k adds its own fixed pattern (drawn once) to uniform noise."""
    from fbnas.seeding import make_generator

    patterns = torch.rand(num_classes, 1, size, size, generator=make_generator(0, "synthetic patterns")) > 0.7
    g = make_generator(0, "synthetic", "train" if train else "test")
    n = 2048 if train else 512
    labels = torch.randint(0, num_classes, (n,), generator=g)
    noise = torch.randint(0, 110, (n, 1, size, size), generator=g, dtype=torch.int64)
    images = (noise + 120 * patterns[labels].to(torch.int64)).clamp_(0, 255).to(torch.uint8)
    return ImageTensors(images, labels, num_classes, (0.3,), (0.25,), "synthetic",
                        tuple(f"pattern{k}" for k in range(num_classes)))


# ---- folders ---------------------------------------------------------------------------------------
def _fashion_mnist_dir(data_dir: str | os.PathLike | None) -> Path:
    if data_dir is None:
        env = os.environ.get("FBNAS_DATA")
        data_dir = Path(env) if env else DEFAULT_FASHION_MNIST_DIR
    d = Path(data_dir)
    if (d / "fashion-mnist").is_dir() and not (d / "train-labels-idx1-ubyte.gz").exists():
        d = d / "fashion-mnist"
    if not d.is_dir():
        hint = " (install the Debian package dataset-fashion-mnist or pass --data-dir)"
        raise DataError(f"{d}: data folder not found{hint}")
    return d


def _required_dir(name: str, data_dir: str | os.PathLike | None) -> Path:
    if data_dir is None:
        env = os.environ.get("FBNAS_DATA")
        if not env:
            raise DataError(f"dataset {name!r} needs --data-dir (or $FBNAS_DATA)")
        data_dir = env
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"{d}: data folder not found")
    return d


# ---- IDX (MNIST / Fashion-MNIST) -------------------------------------------------------------------
IDX_IMAGES_MAGIC = 0x00000803  # uint8, 3 dims
IDX_LABELS_MAGIC = 0x00000801  # uint8, 1 dim


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).exists():
            return folder / name
    raise DataError(f"{folder / (stem + '.gz')}: file not found")


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> torch.Tensor:
    """Parse an IDX file (gzip-compressed or raw) of unsigned bytes into a uint8 tensor of its shape."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    magic = struct.unpack(">I", raw[:4])[0]
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic 0x{magic:08x})")
    if expected_magic is not None and magic != expected_magic:
        raise DataError(f"{path}: bad magic 0x{magic:08x}, expected 0x{expected_magic:08x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = 1
    for d in dims:
        expected *= d
    if len(raw) - header != expected:
        raise DataError(f"{path}: size mismatch: header {list(dims)} needs {expected} bytes of data, "
                        f"file has {len(raw) - header} (truncated or corrupt)")
    if expected == 0:
        return torch.empty(dims, dtype=torch.uint8)
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(dims)


def _load_fashion_mnist(folder: Path, train: bool) -> ImageTensors:
    prefix = "train" if train else "t10k"
    img_path = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
    lbl_path = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(img_path, IDX_IMAGES_MAGIC)
    labels = read_idx(lbl_path, IDX_LABELS_MAGIC).long()
    if images.shape[0] == 0:
        raise DataError(f"{img_path}: holds no images (its header counts 0 items)")
    if images.shape[1] != images.shape[2] or images.shape[1] == 0:
        raise DataError(f"{img_path}: images of {images.shape[1]}x{images.shape[2]} pixels; fbnas needs square "
                        "images of at least 1 pixel")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{lbl_path}: {labels.shape[0]} labels but {img_path.name} has {images.shape[0]} images")
    if labels.numel() and int(labels.max()) > 9:
        raise DataError(f"{lbl_path}: label {int(labels.max())} out of range 0..9")
    mean, std = FASHION_MNIST_STATS
    return ImageTensors(images.unsqueeze(1).contiguous(), labels, 10, mean, std, "fashion-mnist")


# ---- CIFAR-10 --------------------------------------------------------------------------------------
def _load_cifar10(folder: Path, train: bool) -> ImageTensors:
    if not (folder / "test_batch").exists() and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    parts, labels = [], []
    for n in names:
        path = folder / n
        if not path.exists():
            raise DataError(f"{path}: file not found (expected the CIFAR-10 python batch folder)")
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data = batch[b"data"]
            lbl = batch[b"labels"]
        except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
            raise DataError(f"{path}: not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
        t = torch.as_tensor(data, dtype=torch.uint8)
        if t.dim() != 2 or t.shape[1] != 3 * 32 * 32:
            raise DataError(f"{path}: data has shape {tuple(t.shape)}, expected (N, 3072)")
        if t.shape[0] != len(lbl):
            raise DataError(f"{path}: {t.shape[0]} images but {len(lbl)} labels")
        parts.append(t.reshape(-1, 3, 32, 32))
        labels.append(torch.as_tensor(lbl, dtype=torch.int64))
    mean, std = CIFAR10_STATS
    return ImageTensors(torch.cat(parts), torch.cat(labels), 10, mean, std, "cifar10")


# ---- image folders ---------------------------------------------------------------------------------
def _center_square(im):  # PIL.Image -> PIL.Image
    """The largest centred square of an image: resizing it to size x size then never stretches a photo."""
    side = min(im.width, im.height)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    return im.crop((left, top, left + side, top + side))


def _load_imagefolder(folder: Path, train: bool, size: int) -> ImageTensors:
    from PIL import Image, UnidentifiedImageError

    split_dirs = ["train"] if train else ["test", "val"]
    root = next((folder / s for s in split_dirs if (folder / s).is_dir()), None)
    if root is None:
        if not train:
            raise DataError(f"{folder}: no test/ or val/ folder for the test split")
        root = folder
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not class_dirs:
        raise DataError(f"{root}: no class folders (expected one folder of images per class)")
    classes = tuple(p.name for p in class_dirs)
    if not train and (folder / "train").is_dir():
        train_classes = tuple(sorted(p.name for p in (folder / "train").iterdir() if p.is_dir()))
        if train_classes != classes:
            raise DataError(f"{root}: class folders {list(classes)} differ from train/ {list(train_classes)}")
    images, labels = [], []
    for ci, cdir in enumerate(class_dirs):
        for f in sorted(cdir.iterdir()):
            if f.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                with Image.open(f) as im:
                    im = _center_square(im.convert("RGB")).resize((size, size), Image.BILINEAR)
                    images.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
                                  .reshape(size, size, 3).permute(2, 0, 1))
            except (UnidentifiedImageError, OSError) as e:
                raise DataError(f"{f}: unreadable image ({e})") from None
            labels.append(ci)
    if not images:
        raise DataError(f"{root}: no images found (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    x = torch.stack(images).contiguous()
    xf = x.float().div_(255)
    mean = tuple(float(v) for v in xf.mean(dim=(0, 2, 3)))
    std = tuple(max(float(v), 1e-3) for v in xf.std(dim=(0, 2, 3)))
    return ImageTensors(x, torch.tensor(labels, dtype=torch.int64), len(classes), mean, std, "imagefolder", classes)
