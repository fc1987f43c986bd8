"""Does the model copy its training images? Nearest training neighbours of samples, against the
same distances for real test images.

nearest_neighbours  exact k nearest references (Euclidean) of every query, computed in blocks of
                    `batch` queries x `batch` references, |q - r|^2 = |q|^2 - 2 q.r + |r|^2 by
                    matrix products, a running top-k per query: memory O(batch^2 + k batch F), so
                    the 60,000 MNIST training images fit at any query count. The k found are
                    measured directly at the end (copies get distance 0, not round-off).
memorisation_check  d(x) = the distance from x to its nearest training example. The threshold
                    tau = the `quantile` (default 1%) of d over real test images, which the model
                    never saw; then fraction_below = P_samples(d <= tau). Images drawn like the
                    test set give ~quantile; copies (or near copies) of training images give ~1.
                    median_ratio = median_samples(d) / median_test(d): ~1 for fresh images, << 1
                    for copies, > 1 for samples further from the data than real images are.

The "memorisation" tool runs it on MNIST-shaped runs of any generative family, in two spaces:
pixels ([0, 1], 28 x 28; 32 x 32 images centre-cropped as the classifier does) and the MNIST
classifier's 128-d features (genjax.evaluation.extractors.MnistExtractor), which see through
small pixel changes. Reference images are the run's own training split (data.train_split, with
data.classes and data.train_examples applied: the images the model saw) and the first NUM_TEST of
its eval split, as stored (before binarization or dequantization). The training images'
features are the same for every run on the same examples, so they are stored once in the
reference folder (eval.reference_dir, else $GENJAX_REFERENCE_DIR or ~/.cache/genjax/reference_stats)
under a hash of the dataset, split, example selection and extractor (weights included).
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from matplotlib.figure import Figure

from genjax.datasets import load_source
from genjax.evaluation import reference
from genjax.evaluation.extractors import MnistExtractor
from genjax.interpret import TOOLS, NotApplicable, Tool, ToolResult

NUM_SAMPLES = 256  # samples the tool draws
NUM_TEST = 2000  # test images that set the threshold
QUANTILE = 0.01
SHOWN = 6  # samples in the figure: those nearest the training set in pixel space
SHOWN_NEIGHBOURS = 3
FEATURE_BATCH = 1000
REPORTED = (  # memorisation_check's numbers that the tool reports per space
  "fraction_below",
  "median_ratio",
  "threshold",
  "median_sample_distance",
  "median_test_distance",
)


@functools.partial(jax.jit, static_argnames="k")
def _block_neighbours(
  queries: jax.Array, chunks: jax.Array, chunk_norms: jax.Array, k: int
) -> tuple[jax.Array, jax.Array]:
  """queries [b, F]; references in chunks [C, c, F] with squared norms [C, c] (inf on padding)
  -> (distances [b, k] ascending, reference indices [b, k]). Candidates are ranked by the
  expansion of |q - r|^2; the k found are then measured directly (exact for copies, where the
  expansion cancels to round-off) and re-sorted."""
  chunk = chunks.shape[1]
  query_norms = jnp.sum(queries**2, axis=1)

  def step(best, inputs):
    references, norms, offset = inputs
    products = jnp.matmul(queries, references.T, precision=jax.lax.Precision.HIGHEST)
    squared = query_norms[:, None] - 2.0 * products + norms[None, :]
    distances = jnp.concatenate([best[0], squared], axis=1)
    candidates = offset + jnp.arange(chunk, dtype=jnp.int32)
    indices = jnp.concatenate([best[1], jnp.broadcast_to(candidates, squared.shape)], axis=1)
    negated, positions = jax.lax.top_k(-distances, k)
    return (-negated, jnp.take_along_axis(indices, positions, axis=1)), None

  start = (
    jnp.full((len(queries), k), jnp.inf, queries.dtype),
    jnp.full((len(queries), k), -1, jnp.int32),
  )
  offsets = jnp.arange(len(chunks), dtype=jnp.int32) * chunk
  _, indices = jax.lax.scan(step, start, (chunks, chunk_norms, offsets))[0]
  found = chunks.reshape(-1, chunks.shape[-1])[indices]  # [b, k, F]
  distances = jnp.sqrt(jnp.sum((queries[:, None, :] - found) ** 2, axis=-1))
  order = jnp.argsort(distances, axis=1, stable=True)
  return jnp.take_along_axis(distances, order, 1), jnp.take_along_axis(indices, order, 1)


def _pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
  return np.pad(x, ((0, -len(x) % multiple), (0, 0)))


def nearest_neighbours(
  queries: np.ndarray, references: np.ndarray, k: int, batch: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
  """The k nearest references [R, F] (Euclidean) of each query [Q, F]: (distances [Q, k] float32,
  ascending, and indices [Q, k] into references). Exact; blocks of `batch` x `batch` (see the
  module docstring). Ties keep the lower index first."""
  queries = np.asarray(queries, np.float32)
  references = np.asarray(references, np.float32)
  if queries.ndim != 2 or references.ndim != 2 or queries.shape[1] != references.shape[1]:
    raise ValueError(
      f"queries [Q, F] and references [R, F] must share F, got {queries.shape} and "
      f"{references.shape}."
    )
  if not 1 <= k <= len(references):
    raise ValueError(f"k must lie in [1, {len(references)}] (the references), got {k}.")
  if batch < 1:
    raise ValueError(f"batch must be positive, got {batch}.")
  chunks = _pad_rows(references, batch)
  norms = np.sum(chunks.astype(np.float64) ** 2, axis=1)
  norms[len(references) :] = np.inf  # padding rows are never neighbours
  chunks = jnp.asarray(chunks.reshape(-1, batch, references.shape[1]))
  norms = jnp.asarray(norms.reshape(-1, batch), jnp.float32)
  padded = _pad_rows(queries, batch)
  distances, indices = [], []
  for start in range(0, len(padded), batch):
    block = _block_neighbours(jnp.asarray(padded[start : start + batch]), chunks, norms, k=k)
    distances.append(np.asarray(block[0]))
    indices.append(np.asarray(block[1]))
  count = len(queries)
  return np.concatenate(distances)[:count], np.concatenate(indices)[:count].astype(np.int64)


def memorisation_check(
  sample_feats: np.ndarray,
  train_feats: np.ndarray,
  test_feats: np.ndarray,
  quantile: float = QUANTILE,
  batch: int = 1024,
) -> dict[str, float]:
  """Samples [S, F] against the training set [N, F], calibrated by test images [T, F] (module
  docstring): {threshold, fraction_below, median_ratio, median_sample_distance,
  median_test_distance, quantile, num_samples, num_train, num_test}."""
  if not 0.0 < quantile < 1.0:
    raise ValueError(f"quantile must lie in (0, 1), got {quantile}.")
  sample_distances = nearest_neighbours(sample_feats, train_feats, 1, batch)[0][:, 0]
  test_distances = nearest_neighbours(test_feats, train_feats, 1, batch)[0][:, 0]
  threshold = float(np.quantile(test_distances, quantile))
  median_sample, median_test = (float(np.median(d)) for d in (sample_distances, test_distances))
  return {
    "threshold": threshold,
    "fraction_below": float(np.mean(sample_distances <= threshold)),
    "median_ratio": median_sample / median_test if median_test > 0 else math.inf,
    "median_sample_distance": median_sample,
    "median_test_distance": median_test,
    "quantile": quantile,
    "num_samples": len(sample_distances),
    "num_train": len(train_feats),
    "num_test": len(test_distances),
  }


def neighbours_figure(
  samples: np.ndarray,
  train: np.ndarray,
  neighbours: dict[str, tuple[np.ndarray, np.ndarray]],
) -> Figure:
  """A row per sample [N, 28, 28, 1] on [0, 1]: the sample, then per space its nearest training
  images (train [M, 28, 28, 1]) titled with their distances; neighbours: space -> (distances
  [N, k], indices [N, k])."""
  count = len(samples)
  k = next(iter(neighbours.values()))[0].shape[1]
  columns = 1 + k * len(neighbours)
  figure = Figure(figsize=(1.1 * columns, 1.25 * count + 0.4), layout="constrained")
  axes = figure.subplots(count, columns, squeeze=False)
  for row in range(count):
    panels = [(samples[row], "sample")]
    for space, (distances, indices) in neighbours.items():
      panels += [(train[indices[row, j]], f"{space} d={distances[row, j]:.3g}") for j in range(k)]
    for axis, (image, title) in zip(axes[row], panels, strict=True):
      axis.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
      axis.set_title(title, fontsize=6)
      axis.set_axis_off()
  figure.suptitle(
    f"Samples nearest the training set (pixels) and their {k} nearest training images",
    fontsize=9,
  )
  return figure


def _check_digit_shaped(experiment) -> None:
  shape = tuple(experiment.family.example_shape)
  if not experiment.info.is_image or shape not in ((28, 28, 1), (32, 32, 1)):
    raise NotApplicable(
      "The memorisation tool compares MNIST-shaped images ([28, 28, 1], or [32, 32, 1] padded) in "
      f"pixels and MNIST-classifier features; this run's examples are {shape}"
      f"{'' if experiment.info.is_image else ' points'}."
    )


def _digits(extractor: MnistExtractor, images: np.ndarray, value_range) -> np.ndarray:
  """images [N, 28|32, 28|32, 1] in value_range -> [N, 28, 28, 1] on [0, 1] (centre-cropped and
  clipped, as the classifier sees them)."""
  return np.clip(np.asarray(extractor.network_input(jnp.asarray(images), value_range)), 0.0, 1.0)


def _split_digits(extractor, data, split: str, seed: int, count: int | None) -> np.ndarray:
  """The first `count` (None: all) examples of a split as [N, 28, 28, 1] on [0, 1]."""
  source = load_source(data, split, seed)
  total = len(source) if count is None else min(count, len(source))
  pixels = source.gather(np.arange(total))["x"]
  return _digits(extractor, pixels.astype(np.float32) / 255.0, (0.0, 1.0))


def _features(extractor: MnistExtractor, digits: np.ndarray) -> np.ndarray:
  """digits [N, 28, 28, 1] on [0, 1] -> the classifier's features [N, 128], FEATURE_BATCH at a
  time (the last batch padded, so one compiled shape)."""
  apply = jax.jit(lambda variables, x: extractor.apply(variables, x, (0.0, 1.0))[0])
  padded = np.pad(digits, ((0, -len(digits) % FEATURE_BATCH), (0, 0), (0, 0), (0, 0)))
  parts = [
    np.asarray(apply(extractor.variables, padded[start : start + FEATURE_BATCH]))
    for start in range(0, len(padded), FEATURE_BATCH)
  ]
  return np.concatenate(parts)[: len(digits)]


def _train_features(extractor: MnistExtractor, config, train: np.ndarray) -> np.ndarray:
  """The classifier's features [M, 128] of the training digits `train` [M, 28, 28, 1] (the whole
  of config.data.train_split as selected): read from the reference folder when a report computed
  them before for the same examples and extractor, else computed and stored there (atomically)."""
  data, split = config.data, config.data.train_split
  protocol = {"tool": "memorisation", "dataset": data.name, "split": split, "count": len(train),
              "pixels": "uint8 / 255, clipped to [0, 1]", "extractor": extractor.describe(),
              **reference.example_selection(data, split)}
  folder = Path(config.eval.reference_dir or reference.default_reference_dir())
  path = folder / f"memorisation_{data.name}_{split}_{reference.protocol_hash(protocol)[:12]}.npy"
  if path.is_file():
    try:
      stored = np.load(path)
      if stored.shape[0] == len(train):
        return stored
    except (OSError, ValueError) as error:
      logging.warning("%s does not read (%s); computing the features again.", path, error)
  features = _features(extractor, train)
  folder.mkdir(parents=True, exist_ok=True)
  temporary = folder / f".{path.name}.{os.getpid()}.tmp"
  with open(temporary, "wb") as file:
    np.save(file, features)
  os.replace(temporary, path)
  return features


def _run_memorisation(experiment, state, rng: jax.Array) -> ToolResult:
  _check_digit_shaped(experiment)
  config = experiment.config
  extractor = MnistExtractor.load()
  params = experiment.sample_params(state)
  drawn = experiment.sample_fn(params, state.model_state, rng, NUM_SAMPLES)
  samples = _digits(extractor, np.asarray(jax.device_get(drawn)), config.data.value_range)
  train = _split_digits(extractor, config.data, config.data.train_split, config.seed, None)
  test = _split_digits(extractor, config.data, config.data.eval_split, config.seed, NUM_TEST)
  spaces = {  # space -> (embedding, the training images' embedding)
    "pixels": (lambda digits: digits.reshape(len(digits), -1), train.reshape(len(train), -1)),
    "features": (functools.partial(_features, extractor), _train_features(extractor, config, train)),
  }
  summary = {}
  neighbours = {}
  for space, (embed, train_feats) in spaces.items():
    sample_feats, test_feats = embed(samples), embed(test)
    result = memorisation_check(sample_feats, train_feats, test_feats, QUANTILE)
    summary.update({f"{space}_{key}": result[key] for key in REPORTED})
    neighbours[space] = nearest_neighbours(sample_feats, train_feats, SHOWN_NEIGHBOURS)
  shown = np.argsort(neighbours["pixels"][0][:, 0], kind="stable")[:SHOWN]
  figure = neighbours_figure(
    samples[shown], train, {space: (d[shown], i[shown]) for space, (d, i) in neighbours.items()}
  )
  summary.update(
    quantile=QUANTILE,
    num_samples=NUM_SAMPLES,
    num_train=len(train),
    num_test=len(test),
    reading=f"fraction_below ~ {QUANTILE} for fresh images, ~1 for copies of training images",
  )
  return ToolResult({"nearest_training_images": figure}, summary)


TOOLS.register("memorisation")(
  Tool(
    families=("vae", "gan", "stylegan2", "diffusion"),
    description="nearest training images of samples in pixels and MNIST-classifier features; the "
    "fraction of samples closer to the training set than the closest 1% of test images are",
    run=_run_memorisation,
  )
)
