"""Inception Score (Salimans et al. 2016), streamed over batches, with splits.

  IS = exp( E_x KL(p(y|x) || p(y)) ),   p(y) = E_x p(y|x)

Since E_x KL(p(y|x) || p(y)) = H(p(y)) - E_x H(p(y|x)), a split only needs the running sums of
p(y|x) and of the entropies H(p(y|x)); no per-sample outputs are kept. Sample i of N goes to split
floor(i * S / N) (contiguous splits, as in the original code); the score is the mean over the S
splits and the spread their standard deviation (ddof = 0, as in the original code). p(y|x) is the
softmax of the classifier's logits (all 1008 of the FID Inception network; the 10 of the MNIST CNN).
A classifier that outputs the uniform distribution scores 1; confident predictions spread evenly
over K classes score K, the maximum.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

_HIGHEST = jax.lax.Precision.HIGHEST


@flax.struct.dataclass
class ScoreSums:
  """counts [S], probability sums [S, K], entropy sums [S] of the S splits."""

  counts: jax.Array
  probability_sums: jax.Array
  entropy_sums: jax.Array

  @classmethod
  def empty(cls, num_splits: int, num_classes: int) -> ScoreSums:
    return cls(
      jnp.zeros((num_splits,), jnp.float32),
      jnp.zeros((num_splits, num_classes), jnp.float32),
      jnp.zeros((num_splits,), jnp.float32),
    )

  def update(
    self, logits: jax.Array, indices: jax.Array, total: int, mask: jax.Array
  ) -> ScoreSums:
    """Adds logits [B, K] of the samples with global indices [B] (of `total`); mask [B] = 0 skips
    a row."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    probabilities = jnp.exp(log_p)
    entropy = -jnp.sum(probabilities * log_p, axis=-1)
    num_splits = self.counts.shape[0]
    split = jnp.clip(indices * num_splits // total, 0, num_splits - 1)
    one_hot = jax.nn.one_hot(split, num_splits) * mask[:, None].astype(jnp.float32)  # [B, S]
    return ScoreSums(
      self.counts + one_hot.sum(axis=0),
      self.probability_sums + jnp.matmul(one_hot.T, probabilities, precision=_HIGHEST),
      self.entropy_sums + jnp.matmul(one_hot.T, entropy, precision=_HIGHEST),
    )

  def score(self) -> tuple[float, float]:
    """(mean, standard deviation) of exp(H(p(y)) - E H(p(y|x))) over the splits."""
    counts, sums, entropies = (
      np.asarray(v, np.float64)
      for v in jax.device_get((self.counts, self.probability_sums, self.entropy_sums))
    )
    if np.any(counts == 0):
      raise ValueError(
        f"Every Inception Score split needs samples; split sizes {counts.astype(int)}."
      )
    marginal = sums / counts[:, None]
    marginal_entropy = -np.sum(
      np.where(marginal > 0, marginal * np.log(np.maximum(marginal, 1e-30)), 0.0), axis=1
    )
    scores = np.exp(marginal_entropy - entropies / counts)
    return float(np.mean(scores)), float(np.std(scores))


def inception_score(logits: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
  """IS (mean, std over splits) of all logits [N, K] at once."""
  logits = jnp.asarray(logits)
  total = logits.shape[0]
  sums = ScoreSums.empty(num_splits, logits.shape[1]).update(
    logits, jnp.arange(total), total, jnp.ones((total,))
  )
  return sums.score()
