"""Dataset sources: tfds image datasets and generated datasets that need no files.

A source is a random-access collection of examples ({"x": ..., "label": ...}) with `len()` and a
vectorized `gather(indices)`. tfds datasets come from the builder's own data source (array_record);
small ones are decoded once into host memory. Generated datasets:
  2-D toys:  "8gaussians" (ring of 8), "25gaussians" (5x5 grid), "swissroll", "checkerboard";
             the two mixtures state their modes and std in DatasetInfo.mixture
  images:    "synthetic_images", smooth random images of `data.synthetic_shape`, for testing the
             CIFAR/large-image configs without their data.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path

import ml_collections
import numpy as np

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
    return _stack_records(records)


def _stack_records(records) -> dict[str, np.ndarray]:
  arrays = {"x": np.stack([r["image"] for r in records])}
  if "label" in records[0]:
    arrays["label"] = np.asarray([r["label"] for r in records], np.int32)
  return arrays


GENERATED: Registry[Callable[[np.random.Generator, int, ml_collections.ConfigDict], ArraySource]] = (
  Registry("generated dataset")
)


def load_source(data: ml_collections.ConfigDict, split: str, seed: int) -> ArraySource | TfdsSource:
  """The examples of `split` ("train"/"test", or a tfds split string) for `data.name`, limited to
  data.classes and, on the train split, to data.train_examples of them (`select_examples`).

  Generated datasets draw `data.num_examples` points from `seed` (a different stream per split).
  """
  if data.name in GENERATED:
    rng = np.random.default_rng([seed, 0 if split == data.train_split else 1])
    source = GENERATED.get(data.name)(rng, data.num_examples, data)
  else:
    source = _load_tfds(data, split)
  return select_examples(source, data, split)


def select_examples(
  source: ArraySource | TfdsSource, data: ml_collections.ConfigDict, split: str
) -> ArraySource | TfdsSource:
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
  return _load_tfds_cached(data.name, split, resolve_manual_dir(data), data.data_dir, data.in_memory)


@functools.lru_cache(maxsize=8)
def _load_tfds_cached(
  name: str, split: str, manual_dir: str, data_dir: str, in_memory: bool
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
  info = _tfds_info(builder)
  data_source = builder.as_data_source(split=split)
  if not in_memory:
    return TfdsSource(data_source, info)
  records = data_source.__getitems__(list(range(len(data_source))))
  return ArraySource(_stack_records(records), info)


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
  import tensorflow_datasets as tfds

  try:
    return _tfds_info(tfds.builder(data.name, data_dir=data.data_dir or None))
  except tfds.core.registered.DatasetNotFoundError as error:
    raise DataError(f"tfds has no dataset named {data.name!r}: {error}") from None


def _tfds_info(builder) -> DatasetInfo:
  features = builder.info.features
  num_classes = features["label"].num_classes if "label" in features else 0
  return DatasetInfo(tuple(features["image"].shape), num_classes, is_image=True)


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
