"""A small MLP noise-prediction network for 2-D (or any flat) data.

(x [B, D], time [B], labels [B] or None) -> [B, D]: the time's sinusoidal embedding (and an optional
class embedding, num_classes + 1 rows with the last as "no label") goes through Dense + swish and is
added to every hidden layer; hidden layers are Dense + swish; the output layer is zero-initialized.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from genjax.models.unet import positional_embedding


class ScoreMLP(nn.Module):
  hidden: Sequence[int] = (256, 256, 256)
  embedding_dim: int = 64
  num_classes: int = 0

  @nn.compact
  def __call__(
    self, x: jax.Array, time: jax.Array, labels: jax.Array | None = None, train: bool = False
  ) -> jax.Array:
    emb = nn.swish(nn.Dense(self.embedding_dim)(positional_embedding(time, self.embedding_dim)))
    if self.num_classes:
      if labels is None:
        raise ValueError("A class-conditional ScoreMLP needs labels.")
      emb = emb + nn.Embed(self.num_classes + 1, self.embedding_dim)(labels)
    h = x
    for width in self.hidden:
      h = nn.swish(nn.Dense(width)(h) + nn.Dense(width, use_bias=False)(emb))
    return nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros)(h)
