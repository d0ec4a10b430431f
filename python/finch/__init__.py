"""finch for Python: finch's model files, datasets and C++ data pipeline as torch tensors.

    import finch
    model = finch.load_model("runs/fmnist/model.safetensors")
    probs = model.predict(["shoe.png", pil_image, numpy_array])   # torch.Tensor [3, C]
    for images, labels in finch.Loader("configs/fashion_mnist.yaml", "train"):
        ...                                                          # an ordinary PyTorch loop

The module is built against the same LibTorch as Debian's python3-torch: tensors returned here
are ordinary torch tensors sharing finch's memory (no copies). See docs/python.md.
"""

import json
import os

import torch  # noqa: F401  (first: loads the LibTorch that _finch links and its Tensor type)

from . import _finch
from ._finch import FinchError

__version__ = _finch.__version__
__all__ = ["load_model", "Model", "open_dataset", "Dataset", "Loader", "read_image",
           "dataset_formats", "FinchError", "__version__"]


def read_image(path, max_pixels=None):
    """Decodes an image file with finch's reader (Exif orientation applied) -> H x W x 3 uint8."""
    if max_pixels is None:
        return _finch.read_image(os.fspath(path))
    return _finch.read_image(os.fspath(path), int(max_pixels))


def _as_rgb(image):
    """One image as a contiguous H x W x 3 uint8 numpy array."""
    import numpy as np

    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"images must be uint8 (0..255), got {array.dtype}; "
                        "pass preprocessed float batches to Model.forward instead")
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    elif array.ndim == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"an image must be H x W, H x W x 3 or H x W x 4, got shape {array.shape}")
    return np.ascontiguousarray(array)


def _as_batch(images):
    """A single image or a list of them -> (list of arrays, whether one image was given)."""
    single = not isinstance(images, (list, tuple))
    items = [images] if single else list(images)
    if not items:
        raise ValueError("no images given")
    return [_as_rgb(image) for image in items], single


class Model:
    """A finch model file ready for inference: the file's own eval preprocessing, then one
    forward of the inference copy (BatchNorm folded). Images may be file paths, PIL images,
    H x W x 3 uint8 numpy arrays or uint8 tensors, alone or in a list."""

    def __init__(self, path, dtype="fp32"):
        self._session = _finch.Model(os.fspath(path), dtype)
        self.info = json.loads(self._session.info_json())
        self.classes = list(self._session.classes)
        self.input_size = self.info["input_size"]
        self.dtype = self._session.dtype

    def __repr__(self):
        arch = self.info["arch"]
        return (f"finch.Model({arch.get('backbone')} + {arch.get('head')}, "
                f"{len(self.classes)} classes, {self.input_size} px, {self.dtype})")

    def preprocess(self, images):
        """Images -> the float32 [B, 3, H, W] batch the model takes."""
        arrays, _ = _as_batch(images)
        return self._session.preprocess(arrays)

    def forward(self, batch, normalize=False):
        """A preprocessed [B, 3, H, W] batch -> (logits, probabilities, embedding)."""
        return self._session.forward(batch, normalize)

    def _run(self, images, normalize=False):
        arrays, single = _as_batch(images)
        out = self._session.run(arrays, normalize)
        return (tuple(t[0] for t in out) if single else out)

    def predict(self, images):
        """Class probabilities: [C] for one image, [B, C] for a list (softmax of the logits)."""
        return self._run(images)[1]

    def logits(self, images):
        """Raw class scores: [C] or [B, C]."""
        return self._run(images)[0]

    def embed(self, images, normalize=True):
        """The head's input feature (what galleries search): [D] or [B, D], L2-normalised
        unless normalize=False."""
        return self._run(images, normalize)[2]

    def top_k(self, images, k=5):
        """The k most likely classes of each image, as `finch predict --json` lists them:
        [{"class", "index", "prob"}, ...] (a list of such lists for a list of images)."""
        probabilities = self.predict(images)
        rows = probabilities.unsqueeze(0) if probabilities.dim() == 1 else probabilities
        k = max(1, min(int(k), len(self.classes)))
        values, indices = rows.topk(k, dim=1)
        result = [[{"class": self.classes[i], "index": i, "prob": float(p)}
                   for p, i in zip(vs.tolist(), ix.tolist())] for vs, ix in zip(values, indices)]
        return result[0] if probabilities.dim() == 1 else result


def load_model(path, dtype="fp32"):
    """Loads a finch model file (`finch train` writes them; `finch import` converts
    torchvision weights). dtype: "fp32", "bf16" (fast on CPUs with AVX512_BF16 / AMX), "auto"
    (as the CLI), or "int8" (ResNets whose file records a calibration: `finch bench agree
    --dtype int8 --record`)."""
    return Model(path, dtype)


class Dataset:
    """One split of a dataset in any format finch reads, exactly as it ships. Indexing gives
    records: {"index", "label", "class", "source", "path", "box", "parts", "attributes"}
    (None where the format has none); .image(i) decodes sample i."""

    def __init__(self, native, format, root, split):
        self._native = native
        self.format, self.root, self.split = format, os.fspath(root), split
        self.classes = list(native.classes)
        self.part_names = list(native.part_names)
        self.attribute_names = list(native.attribute_names)

    def __len__(self):
        return len(self._native)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._native.record(i) for i in range(*index.indices(len(self)))]
        return self._native.record(index)

    def __iter__(self):
        for i in range(len(self)):
            yield self._native.record(i)

    def image(self, index):
        """Sample `index` decoded: H x W x 3 uint8 RGB numpy array."""
        return self._native.image(index)

    def labels(self):
        return torch.tensor([self._native.record(i)["label"] for i in range(len(self))])

    def __repr__(self):
        return (f"finch.Dataset({self.format!r}, {self.root!r}, split={self.split!r}: "
                f"{len(self)} images, {len(self.classes)} classes)")


def dataset_formats():
    """Names of the dataset formats finch reads (`finch data formats` describes them)."""
    return list(_finch.dataset_formats())


def open_dataset(format, root, split="train", **options):
    """Opens `split` of a dataset at `root` in `format` ("cub", "cars", "imagefolder", "idx",
    ...). Keyword options are the format's `data` keys (e.g. images_subdir="...")."""
    options_yaml = json.dumps(options) if options else ""
    native = _finch.open_dataset(format, os.fspath(root), split, options_yaml)
    return Dataset(native, format, root, split)


def _recipe_text(recipe):
    if isinstance(recipe, dict):
        return json.dumps(recipe), "<dict>"  # JSON is YAML
    path = os.fspath(recipe)
    with open(path, encoding="utf-8") as f:
        return f.read(), path


class Loader:
    """finch's C++ data pipeline for one split of a recipe, for an ordinary PyTorch loop.

    recipe: a YAML recipe path (the same files `finch train` takes) or a dict of the same keys.
    split: "train" (the recipe's training transforms, sampler and shuffling), "val" (the
    shipped or carved validation split) or any split the format has (eval transforms).
    overrides: ["train.batch_size=32", ...] as `--set` takes them.

    Each pass (`for images, labels in loader`) is one epoch: float32 [B, 3, H, W] images and
    int64 [B] labels; the sample order and augmentation depend only on (data.seed, epoch), so
    runs are reproducible. Unreadable images are skipped and listed by .skipped()."""

    def __init__(self, recipe, split="train", overrides=(), epoch=0):
        text, source = _recipe_text(recipe)
        self._native = _finch.Loader(text, source, split, list(overrides))
        self.split = split
        self.epoch = epoch
        self.classes = list(self._native.classes)
        self.batch_size = self._native.batch_size

    def __len__(self):
        return self._native.num_batches

    @property
    def num_samples(self):
        return self._native.num_samples

    def set_epoch(self, epoch):
        """The epoch the next pass runs (like DistributedSampler.set_epoch)."""
        self.epoch = epoch

    def __iter__(self):
        self._native.start_epoch(self.epoch)
        self.epoch += 1
        while True:
            batch = self._native.next()
            if batch is None:
                return
            yield batch

    def skipped(self):
        """[(dataset index, reason)] of images skipped as unreadable in the current epoch."""
        return list(self._native.skipped())
