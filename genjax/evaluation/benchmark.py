"""Feature-extraction throughput of the extractors (images/s), for scripts/benchmark.py."""

from __future__ import annotations

import statistics
import time

import jax
import numpy as np

from genjax.evaluation.extractors import FeatureExtractor, InceptionExtractor, MnistExtractor


def extractor_throughput(
  extractor: FeatureExtractor,
  images: np.ndarray,
  value_range: tuple[float, float],
  repeats: int = 3,
) -> float:
  """Images/s of the jitted extractor on `images` (compilation excluded, median of `repeats`)."""
  apply = jax.jit(extractor.apply, static_argnums=2)
  images = jax.device_put(images)
  jax.block_until_ready(apply(extractor.variables, images, value_range))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(apply(extractor.variables, images, value_range))
    times.append(time.perf_counter() - start)
  return images.shape[0] / statistics.median(times)


def benchmark_extractors(
  mnist_batch: int = 500, inception_batch: int = 32, repeats: int = 5
) -> dict[str, float]:
  """{"mnist_classifier_images_per_s", "inception_v3_images_per_s"} on the default device.

  MNIST: the committed classifier on [mnist_batch, 28, 28, 1] digits. Inception: FIDInceptionV3
  (random weights: the cost does not depend on the values; no fc layer, as with the default
  weights) on [inception_batch, 32, 32, 3] 8-bit images, including the "tf_fid" resize to 299.
  """
  rng = np.random.default_rng(0)
  mnist = extractor_throughput(
    MnistExtractor.load(), rng.random((mnist_batch, 28, 28, 1), np.float32), (0.0, 1.0), repeats
  )
  variables = InceptionExtractor.with_random_weights().variables
  variables["params"].pop("fc")
  inception = extractor_throughput(
    InceptionExtractor(variables, "random"),
    rng.integers(0, 256, (inception_batch, 32, 32, 3)).astype(np.float32),
    (0.0, 255.0),
    repeats,
  )
  return {"mnist_classifier_images_per_s": mnist, "inception_v3_images_per_s": inception}
