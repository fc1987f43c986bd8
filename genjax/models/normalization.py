"""GroupNorm (Wu & He 2018) written for fewer passes over the activations than flax's.

For x [B, H, W, C] in G groups of C / G channels, n = H W C / G values per (example, group):

  S1[b, c] = sum_hw x,  S2[b, c] = sum_hw x^2                      (the only reductions of x)
  mean[b, g] = sum_{c in g} S1 / n,  var[b, g] = sum_{c in g} S2 / n - mean^2
  a[b, c] = scale[c] / sqrt(var[b, g(c)] + eps),  shift[b, c] = bias[c] - mean[b, g(c)] a[b, c]
  y = a x + shift

The same function as flax.linen.GroupNorm (whose default variance is also E[x^2] - E[x]^2), in
one multiply-add per element. What differs is the program autodiff makes of it: reverse mode
reduces the large tensors only for the per-(example, channel) sums sum_hw g and sum_hw g x (the
cotangents of shift and a), and every other gradient comes from [B, C] arrays. Forward and reverse
mode together reduce whole activations 4 times here and 5 times in flax's formulation
(tests/test_normalization.py), with shorter elementwise work around them; on XLA:CPU these passes
are bound by memory bandwidth (the README's Speed section has the measured effect on the UNet
steps). It is plain jnp, so forward mode (the ODE likelihood's Jacobian-vector products) and every
transformation work unchanged.

Parameters are flax's: "scale" (ones) and "bias" (zeros), [C], so checkpoints of either load in
the other. Sums and statistics are float32 whatever the input dtype (flax's
force_float32_reductions); the output has the dtype of x and the parameters together.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class GroupNorm(nn.Module):
  """x [B, ..., C] -> GroupNorm(x) [B, ..., C], statistics over the spatial axes and the C /
  num_groups channels of each group."""

  num_groups: int = 32
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    if channels % self.num_groups:
      raise ValueError(
        f"GroupNorm: {channels} channels do not split into {self.num_groups} groups; choose "
        "model.norm_groups (or groups) dividing every channel count."
      )
    scale = self.param("scale", nn.initializers.ones, (channels,))
    bias = self.param("bias", nn.initializers.zeros, (channels,))
    batch, per_group = x.shape[0], channels // self.num_groups
    values = x.reshape(batch, -1, channels).astype(jnp.float32)  # [B, HW, C]
    count = values.shape[1] * per_group

    def group_mean(sums):  # [B, C] -> [B, C]: the mean over each channel's group
      grouped = sums.reshape(batch, self.num_groups, per_group).sum(-1) / count
      return jnp.repeat(grouped, per_group, axis=1)

    mean = group_mean(values.sum(1))
    variance = jnp.maximum(group_mean(jnp.square(values).sum(1)) - jnp.square(mean), 0.0)
    gain = scale.astype(jnp.float32) * jax.lax.rsqrt(variance + self.epsilon)  # [B, C]
    shift = bias.astype(jnp.float32) - mean * gain
    broadcast = (batch,) + (1,) * (x.ndim - 2) + (channels,)
    out = x.astype(jnp.float32) * gain.reshape(broadcast) + shift.reshape(broadcast)
    return out.astype(jnp.result_type(x, scale, bias))
