"""Dataset sources: tfds image datasets, folders of image files, and generated datasets.

A source is a random-access collection of examples ({"x": ..., "label": ...}) with `len()` and a
vectorized `gather(indices)`. tfds datasets come from the builder's own data source (array_record);
small ones are decoded once into host memory. data.name = "image_folder" reads the PNG/JPEG files of
data.folder (see `open_image_folder`). Generated datasets:
  2-D toys:  "8gaussians" (ring of 8), "25gaussians" (5x5 grid), "swissroll", "checkerboard";
             the two mixtures state their modes and std in DatasetInfo.mixture
  images:    "synthetic_images", smooth random images of `data.synthetic_shape`, for testing the
             CIFAR/large-image configs without their data.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import gzip
import hashlib
import itertools
import os
import re
import time
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import ml_collections
import numpy as np
from absl import logging
from etils import epath
from PIL import Image, ImageOps

from genjax.paths import as_path
from genjax.registry import Registry

# The official MNIST files tfds' `mnist` builder checks (name -> md5 of the release).
MNIST_FILES = {
  "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
  "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
  "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
  "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


class DataError(RuntimeError):
  """A dataset could not be found or prepared; the message says how to fix it."""


MNIST_SPLIT_PREFIXES = {"train": "train", "test": "t10k"}


def read_mnist_idx(folder: epath.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [N, 28, 28], labels uint8 [N]) of the official gzip idx files (MNIST_FILES) in
  `folder`, split "train" (60,000) or "test" (10,000), read directly, without tfds (for tools
  that need a few digits or every digit as arrays). FileNotFoundError when the files are missing,
  DataError when they are not MNIST idx files."""
  prefix = as_path(os.path.expanduser(str(folder))) / MNIST_SPLIT_PREFIXES[split]
  images_file, labels_file = (as_path(f"{prefix}-{kind}-idx{n}-ubyte.gz") for kind, n in
                              (("images", 3), ("labels", 1)))
  if not (str(folder) and images_file.is_file() and labels_file.is_file()):
    raise FileNotFoundError(
      f"The MNIST {split} files {images_file.name} and {labels_file.name} are not in "
      f"{repr(str(folder)) if str(folder) else 'a folder (none given)'}: give the folder with the "
      "official files (--config.data.manual_dir) or set GENJAX_DATA_DIR."
    )
  images = gzip.decompress(images_file.read_bytes())
  labels = gzip.decompress(labels_file.read_bytes())
  magic, count, rows, cols = np.frombuffer(images, ">u4", count=4)
  if magic != 2051 or np.frombuffer(labels, ">u4", count=2).tolist() != [2049, count]:
    raise DataError(f"{prefix}-*-ubyte.gz are not a matching pair of MNIST idx files.")
  pixels = np.frombuffer(images, np.uint8, offset=16).reshape(count, rows, cols)
  return pixels, np.frombuffer(labels, np.uint8, offset=8)


@dataclasses.dataclass(frozen=True, eq=False)
class Mixture:
  """The equal-weight Gaussian mixture a generated dataset draws from: modes [K, D] (the means,
  float64, read-only) and std, the standard deviation of every mode in every dimension."""

  modes: np.ndarray
  std: float

  def __post_init__(self):
    modes = np.array(self.modes, np.float64)
    modes.flags.writeable = False
    object.__setattr__(self, "modes", modes)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """shape: one example's shape ([H, W, C] for images, [D] for points); num_classes: 0 if unlabeled;
  is_image: integer pixels in [0, 255] (else float points); mixture: the Gaussian mixture the points
  are drawn from ("8gaussians", "25gaussians"), else None."""

  shape: tuple[int, ...]
  num_classes: int
  is_image: bool
  mixture: Mixture | None = None


class ArraySource:
  """Examples held in host memory as numpy arrays with a common leading axis."""

  def __init__(self, arrays: dict[str, np.ndarray], info: DatasetInfo):
    self.arrays, self.info = arrays, info

  def __len__(self) -> int:
    return len(next(iter(self.arrays.values())))

  def gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[indices] for key, value in self.arrays.items()}


class TfdsSource:
  """Records decoded on access from a tfds data source (for datasets too large for memory)."""

  def __init__(self, data_source, info: DatasetInfo):
    self.data_source, self.info = data_source, info

  def __len__(self) -> int:
    return len(self.data_source)

  def gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    records = self.data_source.__getitems__([int(i) for i in indices])
    return _stack_records(records, self.info.shape[0])


def _stack_records(records, size: int) -> dict[str, np.ndarray]:
  """Images [N, H, W, C] and labels [N]; images of another size (datasets of varying sizes, e.g.
  COCO) are centre-cropped to a square and resized to size x size (`_crop_and_resize`)."""
  images = [r["image"] for r in records]
  if any(image.shape[:2] != (size, size) for image in images):
    images = [_square(image, size) for image in images]
  arrays = {"x": np.stack(images)}
  if "label" in records[0]:
    arrays["label"] = np.asarray([r["label"] for r in records], np.int32)
  return arrays


def _square(image: np.ndarray, size: int) -> np.ndarray:
  channels = image.shape[-1]
  resized = np.asarray(_crop_and_resize(Image.fromarray(image.squeeze(-1) if channels == 1 else image), size))
  return resized.reshape(size, size, channels)


GENERATED: Registry[Callable[[np.random.Generator, int, ml_collections.ConfigDict], ArraySource]] = (
  Registry("generated dataset")
)


def load_source(
  data: ml_collections.ConfigDict, split: str, seed: int
) -> ArraySource | TfdsSource | ImageFolderSource:
  """The examples of `split` ("train"/"test", or a tfds split string) for `data.name`, limited to
  data.classes and, on the train split, to data.train_examples of them (`select_examples`).

  Generated datasets draw `data.num_examples` points from `seed` (a different stream per split).
  An image folder has one set of images, which every split names (see `open_image_folder`).
  With data.captions (image-caption data), batches also carry each example's encoded caption
  (genjax.text.conditioning.captioned_source).
  """
  if data.name in GENERATED:
    rng = np.random.default_rng([seed, 0 if split == data.train_split else 1])
    source = GENERATED.get(data.name)(rng, data.num_examples, data)
  elif data.name == IMAGE_FOLDER:
    source = _load_image_folder_cached(data.folder, data.image_size, data.in_memory)
  else:
    source = _load_tfds(data, split)
  source = select_examples(source, data, split)
  if data.get("captions"):
    from genjax.text.conditioning import captioned_source  # loads the text encoder's packages

    source = captioned_source(source, data, split, seed)
  return source


def select_examples(
  source: ArraySource | TfdsSource | ImageFolderSource, data: ml_collections.ConfigDict, split: str
) -> ArraySource | TfdsSource | ImageFolderSource:
  """The examples whose label is in data.classes (every split; () keeps all), then, on
  data.train_split only, a fixed random subset of data.train_examples of them (0 keeps all), drawn
  with data.subset_seed and kept in dataset order: the limited-data setting of fine-tuning. With
  data.subset_complement the train split keeps the other examples instead (pre-training on data
  disjoint from the fine-tuning subset)."""
  classes = tuple(int(c) for c in data.classes)
  train_subset = data.train_examples > 0 and split == data.train_split
  if not classes and not train_subset:
    return source
  if not isinstance(source, ArraySource):
    raise ValueError(
      "data.classes and data.train_examples select examples in host memory: set "
      "data.in_memory=True."
    )
  indices = np.arange(len(source))
  if classes:
    num_classes = source.info.num_classes
    if not num_classes or not all(0 <= c < num_classes for c in classes):
      raise ValueError(
        f"data.classes={classes} must be labels of {data.name}, which has "
        f"{num_classes or 'no'} classes (0..{max(num_classes - 1, 0)})."
      )
    indices = np.flatnonzero(np.isin(source.arrays["label"], classes))
  if train_subset:
    if data.train_examples > len(indices):
      raise ValueError(
        f"data.train_examples={data.train_examples} is more than the {len(indices)} training "
        f"examples{' of data.classes' if classes else ''}."
      )
    chosen = np.random.default_rng(data.subset_seed).choice(indices, data.train_examples, replace=False)
    indices = np.setdiff1d(indices, chosen) if data.subset_complement else np.sort(chosen)
  return ArraySource({key: value[indices] for key, value in source.arrays.items()}, source.info)


def resolve_manual_dir(data: ml_collections.ConfigDict) -> str:
  return data.manual_dir or os.environ.get("GENJAX_DATA_DIR", "")


def _how_to_provide(name: str) -> str:
  if name == "mnist":
    files = ", ".join(MNIST_FILES)
    return (
      f"MNIST needs the four official files ({files}) in one folder: pass it with "
      "--config.data.manual_dir=<folder> or the environment variable GENJAX_DATA_DIR "
      "(in this repository's tests: ../shared/data/mnist), or run once on a machine with network so "
      "tfds can download them."
    )
  return (
    f"Put the official files of {name!r} in a folder and pass --config.data.manual_dir=<folder> (or "
    "GENJAX_DATA_DIR), or run once with network so tfds can download and prepare it."
  )


def _load_tfds(data: ml_collections.ConfigDict, split: str) -> ArraySource | TfdsSource:
  return _load_tfds_cached(data.name, split, resolve_manual_dir(data), data.data_dir, data.in_memory,
                           data.image_size)


@functools.lru_cache(maxsize=8)
def _load_tfds_cached(
  name: str, split: str, manual_dir: str, data_dir: str, in_memory: bool, image_size: int
) -> ArraySource | TfdsSource:
  """Decodes a split at most once per process (evaluations during training reuse it)."""
  import tensorflow_datasets as tfds  # slow import; only when real data is used

  if manual_dir:
    folder = Path(manual_dir).expanduser()
    if not folder.is_dir():
      raise DataError(f"The data folder {str(folder)!r} does not exist. {_how_to_provide(name)}")
    if name == "mnist":
      missing = [f for f in MNIST_FILES if not (folder / f).is_file()]
      if missing:
        raise DataError(
          f"The data folder {str(folder)!r} lacks {', '.join(missing)}. {_how_to_provide(name)}"
        )
  data_dir = data_dir or None
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except tfds.core.registered.DatasetNotFoundError as error:
    raise DataError(f"tfds has no dataset named {name!r}: {error}") from None
  if not builder.is_prepared():
    builder = _prepare_once(builder, name, data_dir, manual_dir)
  info = _tfds_info(builder, image_size)
  data_source = builder.as_data_source(split=split)
  if not in_memory:
    return TfdsSource(data_source, info)
  return ArraySource(_decoded_split(builder, split, data_source, info.shape[0]), info)


DECODED_FOLDER = "genjax_decoded"  # in the builder's versioned folder, beside the prepared files


def _decoded_split(builder, split: str, data_source, size: int) -> dict[str, np.ndarray]:
  """Every record of `split` decoded ({"x": [N, size, size, C] uint8, "label": [N]}), read from
  <builder.data_dir>/genjax_decoded/ when an earlier process left it there.

  Decoding is PIL per image (14.7 s for MNIST's 60,000 here, one process), which every new
  process (each command, notebook kernel or host) would otherwise pay; reading the stored arrays
  takes milliseconds. The file is written once, atomically (a temporary name, then a rename), and
  only into a local folder: a remote data_dir (gs://) is left untouched. One that does not read back
  with N records (truncated, or from other prepared files) is decoded again and replaced."""
  folder = Path(builder.data_dir) / DECODED_FOLDER
  local = "://" not in str(builder.data_dir)
  tag = re.sub(r"[^\w.-]", "_", split)
  path = folder / f"{tag}-{hashlib.sha256(split.encode()).hexdigest()[:8]}-{size}px.npz"
  if local and path.is_file():
    try:
      with np.load(path) as stored:
        arrays = {key: stored[key] for key in stored.files}
      if arrays and all(len(value) == len(data_source) for value in arrays.values()):
        return arrays
      logging.warning("%s does not hold the %d records of %r; decoding them again.", path,
                      len(data_source), split)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
      logging.warning("%s does not read (%s); decoding %r again.", path, error, split)
  arrays = _stack_records(data_source.__getitems__(list(range(len(data_source)))), size)
  if local:
    temporary = folder / f".{path.name}.{os.getpid()}.tmp"
    try:
      folder.mkdir(exist_ok=True)
      with open(temporary, "wb") as file:
        np.savez(file, **arrays)
      os.replace(temporary, path)
    except OSError as error:  # a read-only data folder: decode in every process
      temporary.unlink(missing_ok=True)
      logging.info("Not storing the decoded %r in %s: %s", split, folder, error)
  return arrays


def _prepare_once(builder, name: str, data_dir: str | None, manual_dir: str):
  """Prepares a tfds dataset (download, or read from manual_dir), once per shared data_dir.

  With several processes, process 0 prepares while the others wait; a process that still sees no
  prepared data afterwards (hosts with their own local disks) prepares its own copy.
  """
  import jax
  import tensorflow_datasets as tfds

  if jax.process_index() == 0:
    _prepare(builder, name, manual_dir)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(f"genjax_prepare_{name}")
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    if not builder.is_prepared():
      _prepare(builder, name, manual_dir)
  return builder


def _prepare(builder, name: str, manual_dir: str) -> None:
  import tensorflow_datasets as tfds

  download_config = tfds.download.DownloadConfig(manual_dir=manual_dir or None)
  try:
    builder.download_and_prepare(download_config=download_config)
  except tfds.download.download_manager.NonMatchingChecksumError as error:
    raise DataError(
      f"A file of {name!r} does not match its official checksum, so it is not the official "
      f"release (it may be truncated or corrupted): {error}. Replace it with the official file. "
      f"{_how_to_provide(name)}"
    ) from None
  except Exception as error:
    raise DataError(
      f"Could not prepare {name!r} ({type(error).__name__}: {error}). {_how_to_provide(name)}"
    ) from error


def dataset_info(data: ml_collections.ConfigDict) -> DatasetInfo:
  """Shapes and classes of `data.name` without reading or preparing its data (for summaries)."""
  if data.name in GENERATED:
    return GENERATED.get(data.name)(np.random.default_rng(0), 1, data).info
  if data.name == IMAGE_FOLDER:
    return _image_folder_info(data.folder, data.image_size)
  import tensorflow_datasets as tfds

  try:
    return _tfds_info(tfds.builder(data.name, data_dir=data.data_dir or None), data.image_size)
  except tfds.core.registered.DatasetNotFoundError as error:
    raise DataError(f"tfds has no dataset named {data.name!r}: {error}") from None


def _tfds_info(builder, image_size: int) -> DatasetInfo:
  """Shape and classes; images of varying size (shape (None, None, C), e.g. COCO) are read at
  data.image_size x data.image_size (centre crop and resize), which must then be set."""
  features = builder.info.features
  num_classes = features["label"].num_classes if "label" in features else 0
  height, width, channels = features["image"].shape
  if height is None or width is None:
    if not image_size:
      raise ValueError(
        f"The images of {builder.name} vary in size: set data.image_size (e.g. 64) to read them "
        "centre-cropped and resized to a square of that side."
      )
    height = width = image_size
  return DatasetInfo((height, width, channels), num_classes, is_image=True)


# --- folders of image files ---------------------------------------------------------------------

IMAGE_FOLDER = "image_folder"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")  # matched case-insensitively
# PIL modes decoded to one channel; the 16-bit ones keep their high byte.
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I;16", "I;16L", "I;16B"})
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_EXPECTED_FOLDER = (
  'data.name="image_folder" reads the PNG/JPEG files (*.png, *.jpg, *.jpeg, any case, searched '
  "recursively) of data.folder: either all of them under one subfolder per class, or unlabelled "
  "images directly in the folder (e.g. --config.data.folder=/data/ffhq256)."
)


@dataclasses.dataclass(frozen=True, eq=False)
class ImageFolderListing:
  """The image files of a folder, found by name without opening them.

  root: the folder; files: the paths relative to root ("/"-separated), sorted by their path
  components; class_names: the sorted immediate subfolders that hold images when no image sits
  directly in root (else ()); labels: [N] int32, the index in class_names of each file's subfolder,
  or None when unlabelled.
  """

  root: epath.Path
  files: tuple[str, ...]
  class_names: tuple[str, ...]
  labels: np.ndarray | None


def list_image_folder(folder: epath.PathLike) -> ImageFolderListing:
  """The images under `folder` (local or a URI such as gs://...), see ImageFolderListing.

  Raises DataError when the folder is unset, does not exist or holds no image files.
  """
  if not os.fspath(folder):
    raise DataError(f"data.folder is not set. {_EXPECTED_FOLDER}")
  root = as_path(os.path.expanduser(os.fspath(folder)))
  if not root.is_dir():
    raise DataError(
      f"The image folder {str(root)!r} does not exist or is not a folder. {_EXPECTED_FOLDER}"
    )
  found = sorted(
    (directory / name).relative_to(root).parts
    for directory, _, names in root.walk()
    for name in names
    if name.lower().endswith(IMAGE_EXTENSIONS)
  )
  if not found:
    raise DataError(f"The folder {str(root)!r} holds no image files. {_EXPECTED_FOLDER}")
  files = tuple("/".join(parts) for parts in found)
  if any(len(parts) == 1 for parts in found):
    return ImageFolderListing(root, files, (), None)
  class_names = tuple(sorted({parts[0] for parts in found}))
  class_index = {name: index for index, name in enumerate(class_names)}
  labels = np.asarray([class_index[parts[0]] for parts in found], np.int32)
  return ImageFolderListing(root, files, class_names, labels)


def _exif_orientation(image: Image.Image) -> int:
  """The EXIF orientation (1-8; 1 upright) an opened image states before its pixel data (JPEG
  APP1, PNG eXIf before IDAT); later or XMP orientations are ignored, so reading it never decodes."""
  return image.getexif().get(_EXIF_ORIENTATION, 1) if "exif" in image.info else 1


def _read_header(path: epath.Path) -> tuple[str, tuple[int, int]]:
  """(PIL mode, (height, width) after the EXIF orientation) of an image file, from its header."""
  with path.open("rb") as file, Image.open(file) as image:
    width, height = image.size
    if _exif_orientation(image) in _TRANSPOSING_ORIENTATIONS:
      width, height = height, width
    return image.mode, (height, width)


def _attempt(function: Callable, *args):
  """function(*args), or the exception it raised (files that fail are skipped, not fatal)."""
  try:
    return function(*args)
  except Exception as error:  # noqa: BLE001  # PIL raises many types for broken files
    return error


def _describe(error: Exception) -> str:
  return f"{type(error).__name__}: {error}"


def _channels(modes: Iterable[str]) -> int:
  """1 when every image is grayscale (GRAYSCALE_MODES), else 3: all are then decoded as RGB."""
  return 1 if all(mode in GRAYSCALE_MODES for mode in modes) else 3


def _image_shape(image_size: int, first_size: tuple[int, int], channels: int) -> tuple[int, ...]:
  """[image_size, image_size, C], or the first image's [H, W, C] when image_size is 0."""
  return (image_size, image_size, channels) if image_size else (*first_size, channels)


def _crop_and_resize(image: Image.Image, size: int) -> Image.Image:
  """The centre square of side s = min(H, W) (an odd remainder drops the last row or column),
  resized to size x size: BOX (each output pixel the mean of an (s/size)^2 block) when s is an
  integer multiple of size, as the StyleGAN2-ADA FFHQ 256 release was made, else LANCZOS."""
  width, height = image.size
  side = min(width, height)
  left, top = (width - side) // 2, (height - side) // 2
  image = image.crop((left, top, left + side, top + side))
  if side == size:
    return image
  resample = Image.Resampling.BOX if side % size == 0 else Image.Resampling.LANCZOS
  return image.resize((size, size), resample)


def decode_image(path: epath.Path, channels: int, image_size: int) -> np.ndarray:
  """[H, W, channels] uint8 pixels of an image file: `_exif_orientation` applied, converted to L
  (channels 1; 16-bit grayscale keeps its high byte) or RGB (channels 3; alpha dropped), then, when
  image_size > 0, centre-cropped and resized to image_size x image_size (`_crop_and_resize`)."""
  with path.open("rb") as file, Image.open(file) as image:
    if _exif_orientation(image) != 1:
      ImageOps.exif_transpose(image, in_place=True)
    if image.mode.startswith("I;16"):
      image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    image = image.convert("L" if channels == 1 else "RGB")
  if image_size:
    image = _crop_and_resize(image, image_size)
  pixels = np.asarray(image)
  return pixels[..., None] if channels == 1 else pixels


def load_images(path: epath.PathLike, shape: tuple[int, int, int]) -> tuple[list[str], np.ndarray]:
  """(names, uint8 pixels [N, H, W, C]) of one image file or of every image under a folder (found
  as data.name="image_folder" finds them), each fitted to shape [H, W, C]: an image smaller than
  H x W is zero-padded around its centre (as the input pipeline pads MNIST's 28 x 28 to 32 x 32),
  any other is centre-cropped and resized (`_crop_and_resize`). A file that is missing or does not
  decode is a DataError naming it."""
  source = as_path(os.path.expanduser(os.fspath(path)))
  if source.is_dir():
    listing = list_image_folder(source)
    files = [(name, listing.root / name) for name in listing.files]
  elif source.is_file():
    files = [(source.name, source)]
  else:
    raise DataError(f"{str(source)!r} is neither an image file nor a folder of images.")
  height, width, channels = shape
  images = []
  for name, file in files:
    pixels = _attempt(decode_image, file, channels, 0)
    if isinstance(pixels, Exception):
      raise DataError(f"{str(file)!r} is not a readable image ({_describe(pixels)}).")
    if pixels.shape[0] < height and pixels.shape[1] < width:
      top, left = (height - pixels.shape[0]) // 2, (width - pixels.shape[1]) // 2
      pad = ((top, height - pixels.shape[0] - top), (left, width - pixels.shape[1] - left), (0, 0))
      pixels = np.pad(pixels, pad)
    elif pixels.shape[:2] != (height, width):
      pixels = decode_image(file, channels, height)
    images.append(pixels)
  return [name for name, _ in files], np.stack(images)


class ImageFolderSource:
  """The readable images of a folder, decoded on access (data.in_memory=False).

  files: paths relative to root whose headers read as images (`open_image_folder`); labels: [N]
  int32 or None; info.shape: [H, W, C] of every decoded example; skipped: the files left out as
  unreadable. A file that passed the header check but fails to decode in `gather` is a DataError
  (the indices of a running input pipeline cannot change); `decode_all` skips such files instead.
  """

  def __init__(
    self,
    listing: ImageFolderListing,
    files: tuple[str, ...],
    labels: np.ndarray | None,
    info: DatasetInfo,
    image_size: int,
    skipped: tuple[str, ...],
  ):
    self.listing, self.files, self.labels, self.info = listing, files, labels, info
    self.image_size, self.skipped = image_size, skipped

  def __len__(self) -> int:
    return len(self.files)

  def _decode_checked(self, index: int) -> np.ndarray:
    """decode_image of files[index]; raises the decoder's error, or DataError for a wrong shape."""
    path = self.listing.root / self.files[index]
    pixels = decode_image(path, self.info.shape[-1], self.image_size)
    if pixels.shape != self.info.shape:
      raise DataError(
        f"{str(path)!r} decodes to {pixels.shape[0]}x{pixels.shape[1]} pixels, not the "
        f"{self.info.shape[0]}x{self.info.shape[1]} of the folder's other images; set "
        "data.image_size to crop and resize every image to one size."
      )
    return pixels

  def gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """{"x": [B, H, W, C] uint8, "label": [B] int32 (labelled folders only)} of files[indices]."""
    images = []
    for index in indices:
      try:
        images.append(self._decode_checked(int(index)))
      except DataError:
        raise
      except Exception as error:
        path = self.listing.root / self.files[int(index)]
        raise DataError(
          f"Could not decode {str(path)!r} ({_describe(error)}). Replace or remove the file, or "
          "set data.in_memory=True, which decodes every image up front and skips unreadable ones."
        ) from error
    arrays = {"x": np.stack(images)}
    if self.labels is not None:
      arrays["label"] = self.labels[np.asarray(indices)]
    return arrays

  def decode_all(self, num_threads: int) -> ArraySource:
    """Every image decoded into one [N, H, W, C] uint8 array by num_threads threads; files that fail
    to decode are left out with a warning (their rows are compacted away in place)."""
    pixels = np.empty((len(self), *self.info.shape), np.uint8)

    def fill(index: int) -> Exception | None:
      decoded = _attempt(self._decode_checked, index)
      if isinstance(decoded, DataError):
        raise decoded
      if isinstance(decoded, Exception):
        return decoded
      pixels[index] = decoded
      return None

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
      errors = list(pool.map(fill, range(len(self))))
    failed = [index for index, error in enumerate(errors) if error is not None]
    for index in failed:
      path = self.listing.root / self.files[index]
      logging.warning("Skipping %s: it does not decode (%s).", path, _describe(errors[index]))
    kept = np.setdiff1d(np.arange(len(self)), failed)
    if not len(kept):
      raise DataError(
        f"None of the {len(self)} images of {str(self.listing.root)!r} decodes (the first: "
        f"{_describe(errors[0])}). {_EXPECTED_FOLDER}"
      )
    for target, index in enumerate(kept):
      if target != index:
        pixels[target] = pixels[index]
    pixels = pixels[: len(kept)]
    logging.info(
      "Decoded %d images of %s into host memory (%.2f GB, %.1f s); %d unreadable files skipped.",
      len(kept), self.listing.root, pixels.nbytes / 1e9, time.monotonic() - start,
      len(self.skipped) + len(failed),
    )
    arrays = {"x": pixels}
    if self.labels is not None:
      arrays["label"] = self.labels[kept]
    return ArraySource(arrays, self.info)


def _decode_threads() -> int:
  """Threads that read image files: the host's cores, at most 32 (PIL decodes without the GIL)."""
  return min(32, os.cpu_count() or 1)


def open_image_folder(folder: epath.PathLike, image_size: int) -> ImageFolderSource:
  """The images of data.name="image_folder": every *.png, *.jpg, *.jpeg (any case) under `folder`,
  recursively, in the order of their relative paths.

  Labels: when every image sits under an immediate subfolder, each subfolder is a class (sorted
  names -> 0..K-1, as torchvision's ImageFolder; DatasetInfo.num_classes = K) and examples carry
  "label"; images directly in the folder make it unlabelled (num_classes 0, no "label"). The
  official FFHQ release (images1024x1024/00000, 01000, ...) thus reads as 70 classes, which
  unconditional models ignore.
  Pixels: grayscale images (GRAYSCALE_MODES) give C = 1 when all images are grayscale; otherwise
  every image is converted to RGB, C = 3. With image_size > 0 every image is centre-cropped to a
  square and resized to image_size x image_size (BOX when downscaling by an integer factor, else
  LANCZOS; see `_crop_and_resize`), so the zero-padding of input_pipeline leaves it unchanged;
  with image_size = 0 all images must share one size.
  Splits: the folder is one set of images, which every split names (eval_split and
  eval.reference_split included): FID against the training images is the GAN convention.
  Every header is read here (by a thread pool); files that are not readable images are skipped
  with a warning each. Raises DataError for a missing or empty folder, no readable image, or (with
  image_size = 0) two images of different sizes, naming them.
  """
  listing = list_image_folder(folder)
  paths = [listing.root / name for name in listing.files]
  with concurrent.futures.ThreadPoolExecutor(_decode_threads()) as pool:
    headers = list(pool.map(functools.partial(_attempt, _read_header), paths))
  readable, skipped = [], []
  for index, header in enumerate(headers):
    if isinstance(header, Exception):
      logging.warning("Skipping %s: not a readable image (%s).", paths[index], _describe(header))
      skipped.append(listing.files[index])
    else:
      readable.append(index)
  if not readable:
    raise DataError(
      f"None of the {len(paths)} image files of {str(listing.root)!r} is a readable image (the "
      f"first, {listing.files[0]!r}: {_describe(headers[0])}). {_EXPECTED_FOLDER}"
    )
  if skipped:
    logging.warning("Skipped %d of %d image files of %s as unreadable.", len(skipped), len(paths),
                    listing.root)
  first = readable[0]
  if not image_size:
    for index in readable:
      if headers[index][1] != headers[first][1]:
        (h1, w1), (h2, w2) = headers[first][1], headers[index][1]
        raise DataError(
          f"The images of {str(listing.root)!r} differ in size: {listing.files[first]!r} is "
          f"{h1}x{w1} (HxW) but {listing.files[index]!r} is {h2}x{w2}. Set data.image_size (e.g. "
          "--config.data.image_size=256) to centre-crop and resize every image to one size."
        )
  channels = _channels(headers[index][0] for index in readable)
  info = DatasetInfo(
    _image_shape(image_size, headers[first][1], channels), len(listing.class_names), is_image=True
  )
  if listing.class_names:
    logging.info("Image folder %s: classes %s.", listing.root,
                 ", ".join(f"{i}={name}" for i, name in enumerate(listing.class_names)))
  labels = listing.labels[readable] if listing.labels is not None else None
  files = tuple(listing.files[index] for index in readable)
  return ImageFolderSource(listing, files, labels, info, image_size, tuple(skipped))


@functools.lru_cache(maxsize=2)
def _load_image_folder_cached(
  folder: str, image_size: int, in_memory: bool
) -> ArraySource | ImageFolderSource:
  """Reads a folder at most once per process: every split and evaluation shares the result."""
  source = open_image_folder(folder, image_size)
  return source.decode_all(_decode_threads()) if in_memory else source


def _image_folder_info(folder: str, image_size: int) -> DatasetInfo:
  """The DatasetInfo open_image_folder gives, from the listing and as few headers as it needs:
  the first readable one, and more only while they are all grayscale."""
  listing = list_image_folder(folder)
  headers = (
    header
    for header in (_attempt(_read_header, listing.root / name) for name in listing.files)
    if not isinstance(header, Exception)
  )
  first = next(headers, None)
  if first is None:
    raise DataError(
      f"None of the {len(listing.files)} image files of {str(listing.root)!r} is a readable image. "
      f"{_EXPECTED_FOLDER}"
    )
  channels = _channels(itertools.chain([first[0]], (mode for mode, _ in headers)))
  shape = _image_shape(image_size, first[1], channels)
  return DatasetInfo(shape, len(listing.class_names), is_image=True)


# --- generated datasets -------------------------------------------------------------------------


def _points(
  x: np.ndarray, label: np.ndarray, num_classes: int, mixture: Mixture | None = None
) -> ArraySource:
  info = DatasetInfo((x.shape[1],), num_classes, is_image=False, mixture=mixture)
  return ArraySource({"x": x.astype(np.float32), "label": label.astype(np.int32)}, info)


def ring_modes(count: int, radius: float) -> np.ndarray:
  """[count, 2] points evenly spaced on the circle of `radius`, the first at (radius, 0)."""
  angles = 2 * np.pi * np.arange(count) / count
  return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


# The ring of 8 Gaussians, radius 2, std 0.02 (the unrolled-GAN/VEEGAN benchmark).
EIGHT_GAUSSIANS = Mixture(ring_modes(8, 2.0), 0.02)
# The 5x5 grid of Gaussians at {-2, -1, 0, 1, 2}^2, std 0.05.
TWENTY_FIVE_GAUSSIANS = Mixture(
  np.stack(np.meshgrid(np.arange(-2, 3), np.arange(-2, 3)), -1).reshape(-1, 2), 0.05
)


def _mixture_points(rng: np.random.Generator, n: int, mixture: Mixture) -> ArraySource:
  """n points of the mixture; label = the mode each was drawn from (uniform)."""
  count, dim = mixture.modes.shape
  label = rng.integers(0, count, n)
  x = mixture.modes[label] + mixture.std * rng.standard_normal((n, dim))
  return _points(x, label, count, mixture)


@GENERATED.register("8gaussians")
def eight_gaussians(rng: np.random.Generator, n: int, data) -> ArraySource:
  """Points of EIGHT_GAUSSIANS (a ring of 8); label = mode."""
  return _mixture_points(rng, n, EIGHT_GAUSSIANS)


@GENERATED.register("25gaussians")
def twenty_five_gaussians(rng: np.random.Generator, n: int, data) -> ArraySource:
  """Points of TWENTY_FIVE_GAUSSIANS (a 5x5 grid); label = mode."""
  return _mixture_points(rng, n, TWENTY_FIVE_GAUSSIANS)


@GENERATED.register("swissroll")
def swiss_roll(rng: np.random.Generator, n: int, data) -> ArraySource:
  """The 2-D swiss roll, t ~ U[1.5pi, 4.5pi], scaled to about [-2, 2]^2."""
  t = 1.5 * np.pi * (1 + 2 * rng.random(n))
  x = np.stack([t * np.cos(t), t * np.sin(t)], 1) / 7.0 + 0.05 * rng.standard_normal((n, 2))
  return _points(x, np.zeros(n), 0)


@GENERATED.register("checkerboard")
def checkerboard(rng: np.random.Generator, n: int, data) -> ArraySource:
  """Uniform on the dark squares of a 4x4 checkerboard over [-2, 2]^2."""
  x1 = rng.random(n) * 4 - 2
  x2 = rng.random(n) + rng.integers(0, 2, n) * 2 - 2 + (np.floor(x1) % 2)
  return _points(np.stack([x1, x2], 1), np.zeros(n), 0)


@GENERATED.register("synthetic_images")
def synthetic_images(rng: np.random.Generator, n: int, data) -> ArraySource:
  """Smooth random uint8 images of shape data.synthetic_shape with 10 labels (bright blob position)."""
  height, width, channels = data.synthetic_shape
  label = rng.integers(0, 10, n)
  ys, xs = (np.mgrid[0:height, 0:width] / max(height, width)).astype(np.float32)
  centers = np.stack([label // 4, label % 4], 1) / 4.0 + 0.125
  blob = np.exp(-((ys[None] - centers[:, :1, None]) ** 2 + (xs[None] - centers[:, 1:, None]) ** 2) * 20)
  colour = rng.random((n, 1, 1, channels), np.float32)
  images = blob[..., None] * colour + 0.1 * rng.random((n, height, width, channels), np.float32)
  info = DatasetInfo((height, width, channels), 10, is_image=True)
  return ArraySource(
    {"x": np.clip(images * 255, 0, 255).astype(np.uint8), "label": label.astype(np.int32)}, info
  )
