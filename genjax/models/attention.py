"""Multi-head attention shared by the diffusion networks: self-attention and cross-attention to
the tokens of a text encoder, with padding masked out.

Text conditioning reaches a network as its `labels`: a mapping (see `text_conditioning`)

  tokens [B, L, D_text]  the encoder's per-token states
  mask   [B, L]          1 for a real token, 0 for padding
  pooled [B, D_text]     the sentence embedding

Masking: a query attends with softmax_l(q . k_l / sqrt(d)) over the real tokens only, so padding
(of any length or value) changes nothing. A row whose mask is all zeros (an empty prompt, e.g. the
null prompt of classifier-free guidance) attends to nothing: its attention output is zero (no NaN),
and the layer adds only its output projection's bias.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

TEXT_KEYS = ("tokens", "mask", "pooled")


def text_conditioning(labels, context_dim: int) -> Mapping[str, jax.Array]:
  """The text `labels` of a network with cross-attention (context_dim > 0), checked: a mapping
  with TEXT_KEYS whose tokens [B, L, context_dim], mask [B, L] and pooled [B, context_dim]."""
  if not isinstance(labels, Mapping) or not set(TEXT_KEYS) <= set(labels):
    raise ValueError(
      f"A network with model.context_dim = {context_dim} needs text labels, a mapping with keys "
      f"{TEXT_KEYS}; got {type(labels).__name__}."
    )
  tokens, mask, pooled = (labels[key] for key in TEXT_KEYS)
  if tokens.shape[-1] != context_dim or pooled.shape[-1] != context_dim:
    raise ValueError(
      f"Text tokens {tokens.shape} and pooled {pooled.shape} must end in model.context_dim = "
      f"{context_dim}."
    )
  if mask.shape != tokens.shape[:2]:
    raise ValueError(f"The token mask {mask.shape} must be [B, L] of tokens {tokens.shape}.")
  return labels


def masked_attention(
  q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
  """q [B, N, heads, d], k and v [B, L, heads, d], mask [B, L] (1 keep, 0 drop) or None ->
  [B, N, heads, d]: out_n = sum_l w_nl v_l, w_n = softmax over the kept l of q_n . k_l / sqrt(d).

  The softmax runs on float32 logits whatever the inputs' dtype (bfloat16 under mixed precision,
  genjax.precision: q . k in bfloat16, then cast), and its weights are cast to v's dtype for the
  second matmul, so both matmuls and their gradients have operands of one dtype. Dropped
  logits are set to float32's lowest value, whose exponential underflows to exactly 0 beside any
  kept logit; the weights are then multiplied by the mask, which zeroes the uniform weights of a
  row with nothing kept, so that row's output is 0."""
  logits = jnp.einsum("bnhd,blhd->bhnl", q, k).astype(jnp.float32) / math.sqrt(q.shape[-1])
  if mask is None:
    weights = jax.nn.softmax(logits, axis=-1)
  else:
    keep = mask.astype(bool)[:, None, None, :]
    weights = jax.nn.softmax(jnp.where(keep, logits, jnp.finfo(logits.dtype).min), axis=-1) * keep
  return jnp.einsum("bhnl,blhd->bnhd", weights.astype(v.dtype), v)


class MultiHeadAttention(nn.Module):
  """x [B, N, D] attending to context [B, L, D_c] (None: to itself) -> [B, N, D].

  Dense projections q (of x), k and v (of the context) to D = heads * d, `masked_attention` per
  head, and an output projection `proj_out` (zero-initialise it to start a residual branch at 0).
  The dense layers are named q, k, v, proj_out like the UNet's AttentionBlock, so one LoRA target
  regex selects both."""

  heads: int
  kernel_init: nn.initializers.Initializer = nn.initializers.xavier_uniform()
  out_kernel_init: nn.initializers.Initializer = nn.initializers.xavier_uniform()

  @nn.compact
  def __call__(
    self, x: jax.Array, context: jax.Array | None = None, mask: jax.Array | None = None
  ) -> jax.Array:
    width = x.shape[-1]
    if width % self.heads:
      raise ValueError(f"Attention width {width} is not divisible by {self.heads} heads.")
    context = x if context is None else context

    def project(name: str, inputs: jax.Array) -> jax.Array:
      h = nn.Dense(width, kernel_init=self.kernel_init, name=name)(inputs)
      return h.reshape(*h.shape[:-1], self.heads, width // self.heads)

    out = masked_attention(project("q", x), project("k", context), project("v", context), mask)
    return nn.Dense(width, kernel_init=self.out_kernel_init, name="proj_out")(out.reshape(x.shape))
