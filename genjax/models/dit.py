"""Diffusion transformer (DiT, Peebles & Xie 2023) with optional cross-attention to text tokens.

(x [B, H, W, C], network time [B], labels, train) -> [B, H, W, out_channels or C]:

  patchify   x -> N = HW / p^2 tokens of p*p*C values (row-major over the patch grid), a linear
             embedding to width D (the same map as a p x p, stride-p convolution), plus the fixed
             2-D sin-cos positional embedding `sincos_2d_embedding`
  c          the conditioning vector [B, D]: Dense(D), swish, Dense(D) of the time's 256-d
             sinusoidal embedding; plus a learned class embedding (num_classes + 1 rows, the last
             the null label of classifier-free guidance) when num_classes > 0, or plus
             Dense(pooled) of the text when context_dim > 0
  depth x    x += gate_a * SelfAttention(LN(x) (1 + scale_a) + shift_a)
  DiTBlock   x += CrossAttention(LN'(x), tokens, mask)             (context_dim > 0)
             x += gate_m * MLP(LN(x) (1 + scale_m) + shift_m)      MLP: D -> mlp_ratio D -> D, GELU
             (tanh); (shift, scale, gate)_{a,m} = Dense(6D)(swish(c)), zero-initialised (adaLN-Zero)
  final      LN(x) (1 + scale) + shift, (shift, scale) = Dense(2D)(swish(c)), zero-initialised
             Dense to p*p*out_channels, unpatchify

LN has no parameters; LN' (the cross-attention's own LayerNorm) has a scale and bias. Cross-attention
(genjax.models.attention) takes queries from the image tokens and keys/values from the text tokens
[B, L, context_dim] projected to D; padding (mask 0) is ignored and an all-padding prompt attends to
nothing. Its output projection is zero-initialised, so at initialisation every block is the identity
and the network's output is exactly 0. DiT's learned variance (2C outputs) is not implemented; set
out_channels for other output widths. There is no dropout: `train` is accepted for the diffusion
network contract and unused. remat=True rematerialises every DiTBlock (genjax.models.unet's
`rematerialised`: the backward pass keeps each block's inputs only and recomputes its inside); the
parameter tree, outputs and gradients are those without it.

Linear layers are Xavier-uniform with zero biases, embeddings of time and classes N(0, 0.02^2), as
in DiT. DiT-S/2 (D 384, depth 12, 6 heads, p 2) on 32x32x4 latents with 1000 classes and 8 output
channels has DiT's parameter count, 32,865,056 (the paper's 33M; tests/test_dit.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.models.attention import MultiHeadAttention, text_conditioning
from genjax.models.unet import positional_embedding, rematerialised

TIME_FREQUENCY_DIM = 256  # DiT's frequency embedding of the time, before the MLP
EMBEDDING_INIT = nn.initializers.normal(0.02)
xavier_init = nn.initializers.xavier_uniform()
zero_init = nn.initializers.zeros


def patchify(x: jax.Array, patch: int) -> jax.Array:
  """[B, H, W, C] -> [B, (H/p)(W/p), p*p*C]: token i*(W/p) + j holds patch (i, j), its values in
  (row, column, channel) order."""
  batch, height, width, channels = x.shape
  x = x.reshape(batch, height // patch, patch, width // patch, patch, channels)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(batch, -1, patch * patch * channels)


def unpatchify(tokens: jax.Array, patch: int, height: int, width: int) -> jax.Array:
  """[B, (H/p)(W/p), p*p*C] -> [B, H, W, C], the inverse of `patchify`."""
  batch = tokens.shape[0]
  channels = tokens.shape[-1] // (patch * patch)
  x = tokens.reshape(batch, height // patch, width // patch, patch, patch, channels)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(batch, height, width, channels)


def sincos_2d_embedding(
  height: int, width: int, dim: int, max_period: float = 10_000.0
) -> jax.Array:
  """[height * width, dim] for the grid positions (i, j), row-major: [sin(i w_k), cos(i w_k),
  sin(j w_k), cos(j w_k)] with w_k = max_period^(-k / (dim/4)), k < dim/4 (MAE, DiT)."""
  if dim % 4:
    raise ValueError(f"The 2-D sin-cos embedding needs a width divisible by 4, not {dim}.")
  quarter = dim // 4
  frequencies = max_period ** (-jnp.arange(quarter) / quarter)
  rows, columns = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")

  def embed(positions: jax.Array) -> jax.Array:
    angles = positions.reshape(-1, 1) * frequencies[None]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=1)

  return jnp.concatenate([embed(rows), embed(columns)], axis=1)


def _modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
  """x [B, N, D] normalised without parameters, then x (1 + scale) + shift ([B, 1, D] each)."""
  x = nn.LayerNorm(epsilon=1e-6, use_bias=False, use_scale=False)(x)
  return x * (1 + scale) + shift


class DiTBlock(nn.Module):
  """x [B, N, D], c [B, D], text tokens [B, L, D_text] and mask [B, L] (or None) -> [B, N, D]."""

  heads: int
  mlp_ratio: float = 4.0

  @nn.compact
  def __call__(
    self, x: jax.Array, c: jax.Array, tokens: jax.Array | None, mask: jax.Array | None
  ) -> jax.Array:
    width = x.shape[-1]
    modulation = nn.Dense(6 * width, kernel_init=zero_init, name="adaln_modulation")(nn.swish(c))
    shift_attn, scale_attn, gate_attn, shift_mlp, scale_mlp, gate_mlp = jnp.split(
      modulation[:, None, :], 6, axis=-1
    )
    x = x + gate_attn * MultiHeadAttention(self.heads, name="self_attention")(
      _modulate(x, shift_attn, scale_attn)
    )
    if tokens is not None:
      queries = nn.LayerNorm(epsilon=1e-6, name="cross_attention_norm")(x)
      x = x + MultiHeadAttention(self.heads, out_kernel_init=zero_init, name="cross_attention")(
        queries, tokens, mask
      )
    h = _modulate(x, shift_mlp, scale_mlp)
    h = nn.Dense(int(width * self.mlp_ratio), kernel_init=xavier_init, name="mlp_in")(h)
    h = nn.Dense(width, kernel_init=xavier_init, name="mlp_out")(nn.gelu(h, approximate=True))
    return x + gate_mlp * h


class DiT(nn.Module):
  """eps/v/F network: (x [B, H, W, C], time [B], labels, train) -> [B, H, W, out_channels or C].

  labels: [B] int class labels in [0, num_classes] (num_classes: the null label) when
  num_classes > 0; the text mapping {tokens, mask, pooled} (genjax.models.attention) when
  context_dim > 0; otherwise ignored. H and W must be multiples of `patch`."""

  patch: int = 2
  hidden_size: int = 384
  depth: int = 6
  heads: int = 6
  mlp_ratio: float = 4.0
  out_channels: int = 0  # channels of the output; 0: as many as the input has
  num_classes: int = 0
  context_dim: int = 0  # width of the text tokens; 0: no text conditioning or cross-attention
  remat: bool = False  # rematerialise the transformer blocks (module docstring)

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    time: jax.Array,
    labels: jax.Array | Mapping[str, jax.Array] | None = None,
    train: bool = False,
  ) -> jax.Array:
    del train  # no dropout
    _, height, width, channels = x.shape
    if height % self.patch or width % self.patch:
      raise ValueError(f"Image size {height}x{width} is not divisible by model.patch {self.patch}.")
    if self.num_classes and self.context_dim:
      raise ValueError(
        "A DiT is conditioned on classes or on text: set model.num_classes or "
        "model.context_dim, not both."
      )
    if self.num_classes and (labels is None or isinstance(labels, Mapping)):
      raise ValueError("A class-conditional DiT needs [B] integer labels.")
    text = text_conditioning(labels, self.context_dim) if self.context_dim else None

    h = nn.Dense(self.hidden_size, kernel_init=xavier_init, name="patch_embedding")(
      patchify(x, self.patch)
    )
    h = h + sincos_2d_embedding(height // self.patch, width // self.patch, self.hidden_size)[None]

    c = positional_embedding(time, TIME_FREQUENCY_DIM)
    c = nn.Dense(self.hidden_size, kernel_init=EMBEDDING_INIT, name="time_embedding_in")(c)
    c = nn.Dense(self.hidden_size, kernel_init=EMBEDDING_INIT, name="time_embedding_out")(
      nn.swish(c)
    )
    tokens = mask = None
    if self.num_classes:
      c = c + nn.Embed(
        self.num_classes + 1,
        self.hidden_size,
        embedding_init=EMBEDDING_INIT,
        name="class_embedding",
      )(labels)
    elif text is not None:
      tokens, mask = text["tokens"], text["mask"]
      c = c + nn.Dense(self.hidden_size, kernel_init=xavier_init, name="pooled_embedding")(
        text["pooled"]
      )

    block = rematerialised(DiTBlock) if self.remat else DiTBlock
    for index in range(self.depth):
      h = block(self.heads, self.mlp_ratio, name=f"block_{index}")(h, c, tokens, mask)

    modulation = nn.Dense(2 * self.hidden_size, kernel_init=zero_init, name="final_modulation")(
      nn.swish(c)
    )
    shift, scale = jnp.split(modulation[:, None, :], 2, axis=-1)
    out_channels = self.out_channels or channels
    h = nn.Dense(self.patch**2 * out_channels, kernel_init=zero_init, name="final_projection")(
      _modulate(h, shift, scale)
    )
    return unpatchify(h, self.patch, height, width)
