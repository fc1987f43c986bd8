"""Streaming feature statistics: images go through an extractor batch by batch, only summaries stay.

Per extractor a `FeatureAccumulator` keeps
  - the feature Moments (count, mean, centred scatter; genjax.evaluation.statistics),
  - the Inception Score sums per split (genjax.evaluation.inception_score),
  - the first `keep_features` feature vectors (host memory, for KID and precision/recall/density/
    coverage, which need samples rather than moments),
so memory is O(D^2 + keep_features * D) whatever the number of images. One jitted step per batch
extracts features and updates the summaries; batches may be jax.Arrays sharded over the mesh (the
sums become cross-device reductions) or host numpy arrays. Rows with mask 0 (padding) are ignored.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from genjax import parallel
from genjax.evaluation.extractors import FeatureExtractor, check_value_range
from genjax.evaluation.inception_score import ScoreSums
from genjax.evaluation.statistics import Moments


@flax.struct.dataclass
class _Sums:
  moments: Moments
  scores: ScoreSums
  labelled: jax.Array  # rows that came with a requested label
  correct: jax.Array  # of those, rows whose logits' argmax is that label


@dataclasses.dataclass
class FeatureSummary:
  """count; mean [D] and covariance [D, D] (float64); features [<= keep, D]; inception_score
  (mean, std over splits) or None when no total was given; accuracy: the fraction of labelled rows
  the extractor's classifier assigns to their label, or None when no row had a label."""

  count: int
  mean: np.ndarray
  covariance: np.ndarray
  features: np.ndarray
  inception_score: tuple[float, float] | None
  accuracy: float | None = None


class FeatureAccumulator:
  """Feeds batches of images in value_range through `extractor` and accumulates their statistics.

  value_range: (low, high) of the images, checked on every batch; None for points, which have none.
  total: the number of images that will be added (fixes the Inception Score splits; 0 skips IS).
  """

  def __init__(
    self,
    extractor: FeatureExtractor,
    value_range: tuple[float, float] | None,
    keep_features: int,
    total: int = 0,
    num_splits: int = 10,
    what: str = "images",
  ):
    self.extractor = extractor
    self.value_range = None if value_range is None else tuple(float(v) for v in value_range)
    self.keep_features = keep_features
    self.total = total
    self.what = what
    self.sums = _Sums(
      Moments.empty(extractor.feature_dim),
      ScoreSums.empty(max(num_splits, 1), extractor.num_classes),
      jnp.zeros((), jnp.float32),
      jnp.zeros((), jnp.float32),
    )
    self.kept: list[np.ndarray] = []
    self.num_kept = 0
    self.num_seen = 0
    self._step = jax.jit(functools.partial(_accumulate, extractor, self.value_range, total))

  def add(self, images, mask=None, labels=None) -> None:
    """Adds images [B, H, W, C] (or points [B, D]); mask [B] (1 = real row, 0 = padding), all ones
    by default; labels [B]: the class each image was generated for (counted into `accuracy` when
    the extractor has class logits)."""
    batch = images.shape[0]
    mask = jnp.ones((batch,), jnp.float32) if mask is None else mask
    labels = jnp.full((batch,), -1, jnp.int32) if labels is None else labels
    self.sums, features, low, high, count = self._step(
      self.extractor.variables, self.sums, images, mask, labels, jnp.int32(self.num_seen)
    )
    low, high, count = (float(v) for v in jax.device_get((low, high, count)))
    if count and self.value_range is not None:
      check_value_range(low, high, self.value_range, self.what)
    if self.num_kept < self.keep_features:
      features, mask = parallel.to_host((features, mask))
      rows = np.asarray(features)[np.asarray(mask) > 0][: self.keep_features - self.num_kept]
      self.kept.append(rows.astype(np.float32))
      self.num_kept += len(rows)
    self.num_seen += int(count)

  def result(self) -> FeatureSummary:
    count, mean, covariance = self.sums.moments.to_numpy()
    features = (
      np.concatenate(self.kept)
      if self.kept
      else np.zeros((0, self.extractor.feature_dim), np.float32)
    )
    score = self.sums.scores.score() if self.total else None
    if self.total and count != self.total:
      raise ValueError(
        f"Expected {self.total} {self.what} for the Inception Score splits, got {count}."
      )
    labelled, correct = (float(v) for v in jax.device_get((self.sums.labelled, self.sums.correct)))
    accuracy = correct / labelled if labelled else None
    return FeatureSummary(count, mean, covariance, features, score, accuracy)


def _accumulate(extractor, value_range, total, variables, sums, images, mask, labels, start):
  """One batch: features, updated sums, and min/max/count of the real rows (for range checks);
  labels [B] (-1: none)."""
  mask = mask.astype(jnp.float32)
  features, logits = extractor.apply(variables, images, value_range)
  moments = sums.moments.update(features, mask)
  scores = sums.scores
  if total:
    indices = start + jnp.cumsum(mask).astype(jnp.int32) - 1
    scores = scores.update(logits, indices, total, mask)
  valid = mask.reshape((-1,) + (1,) * (images.ndim - 1)) > 0
  low = jnp.min(jnp.where(valid, images, jnp.inf))
  high = jnp.max(jnp.where(valid, images, -jnp.inf))
  labelled, correct = sums.labelled, sums.correct
  if extractor.num_classes:
    has_label = mask * (labels >= 0)
    labelled = labelled + jnp.sum(has_label)
    correct = correct + jnp.sum(has_label * (jnp.argmax(logits, axis=-1) == labels))
  return _Sums(moments, scores, labelled, correct), features, low, high, jnp.sum(mask)
