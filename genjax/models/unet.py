"""UNets of the DDPM / DDPM++ family for diffusion models (flax linen).

DDPM (Ho et al. 2020): conv_in; per level `num_res_blocks` residual blocks with channels
channels * channel_mult[level] (self-attention after each at `attention_resolutions`) and a strided
3x3 convolution down; middle residual, attention, residual; the mirrored upward path with
num_res_blocks + 1 blocks per level fed the skip connections, nearest upsampling + 3x3 convolution;
GroupNorm(32), swish, 3x3 conv out (zero-initialized). Residual blocks: GN, swish, conv3x3,
+ Dense of the embedding, GN, swish, dropout, conv3x3 (zero-init), 1x1 shortcut when the channels
change.
Time embedding: sinusoidal positional (of the process's network time) or random Fourier features
(of log sigma, NCSN++), then Dense(4C), swish, Dense(4C). With num_classes > 0 a learned class
embedding (num_classes + 1 rows, the last the "no label" of classifier-free guidance) is added.

DDPM++ options (Song et al. 2021b): resblock='biggan' (resampling inside residual blocks, 1x1
shortcuts on resampling) and skip_rescale (residual sums divided by sqrt(2)). NCSN++'s FIR
resampling and progressive input/output paths are not implemented.

Text conditioning (context_dim > 0; labels the mapping {tokens [B, L, context_dim], mask [B, L],
pooled [B, context_dim]} of genjax.models.attention): Dense(pooled) is added to the time embedding,
and after every self-attention block (attention_resolutions and the middle) a cross-attention block
x + MHA(GroupNorm(x), tokens, mask) follows: latent diffusion's SpatialTransformer reduced to its
cross-attention, heads of CROSS_ATTENTION_HEAD_CHANNELS channels (one head when the width is not a
multiple), zero-initialised output projection, padding masked out. With context_dim = 0 the
parameters and outputs are those of the UNet without the option.

remat=True rematerialises every residual, attention and cross-attention block (`rematerialised`):
the backward pass keeps only each block's inputs and recomputes its inside, for about one more
forward pass of compute. The parameter tree, outputs and gradients are those without it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.models.attention import MultiHeadAttention, text_conditioning
from genjax.models.conv import Conv
from genjax.models.normalization import GroupNorm

zero_init = nn.initializers.zeros
default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
CROSS_ATTENTION_HEAD_CHANNELS = 32  # latent diffusion's num_head_channels
# What a rematerialised block saves for the backward pass besides its inputs: nothing, the most
# memory saved (its activations are recomputed). Saving matmul outputs instead
# (dots_with_no_batch_dims_saveable) would keep the dense layers' outputs, most of a DiT block's
# activations, and save little.
REMAT_POLICY = jax.checkpoint_policies.nothing_saveable


@functools.cache
def rematerialised(
  module_class: type[nn.Module], static_argnums: tuple[int, ...] = ()
) -> type[nn.Module]:
  """module_class under flax's nn.remat (jax.checkpoint with REMAT_POLICY); static_argnums count
  self as 0 (Python values such as `train`). The class keeps module_class's name, so flax's
  automatic names (ResBlock_0, not CheckpointResBlock_0) and hence the parameter tree are the same
  with and without remat: a checkpoint trained either way loads the other way."""
  wrapped = nn.remat(module_class, static_argnums=static_argnums, policy=REMAT_POLICY)
  wrapped.__name__ = wrapped.__qualname__ = module_class.__name__
  return wrapped


def positional_embedding(values: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """[B] -> [B, dim]: sin(v w_k), cos(v w_k) with w_k = max_period^(-k / (dim/2 - 1)) (DDPM)."""
  half = dim // 2
  frequencies = jnp.exp(-math.log(max_period) * jnp.arange(half) / (half - 1))
  angles = values[:, None].astype(jnp.float32) * frequencies[None]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=1)


class FourierEmbedding(nn.Module):
  """Gaussian random features of log(value): [sin(2 pi w log v), cos(2 pi w log v)], w ~ N(0,
  scale^2)
  fixed (NCSN++ on sigma). values must be positive."""

  dim: int
  scale: float = 16.0

  @nn.compact
  def __call__(self, values: jax.Array) -> jax.Array:
    weights = self.param("W", nn.initializers.normal(self.scale), (self.dim // 2,))
    angles = jnp.log(values)[:, None] * jax.lax.stop_gradient(weights)[None] * 2 * math.pi
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=1)


def _norm(groups: int) -> GroupNorm:
  return GroupNorm(num_groups=groups, epsilon=1e-6)


class ResBlock(nn.Module):
  out_channels: int
  dropout: float
  groups: int
  resample: str = "none"  # "none", "down", "up" (biggan blocks)
  skip_rescale: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, emb: jax.Array, train: bool) -> jax.Array:
    h = nn.swish(_norm(self.groups)(x))
    if self.resample != "none":
      h, x = _resample(h, self.resample), _resample(x, self.resample)
    h = Conv(self.out_channels, (3, 3), kernel_init=default_init)(h)
    h = h + nn.Dense(self.out_channels, kernel_init=default_init)(nn.swish(emb))[:, None, None, :]
    h = nn.swish(_norm(self.groups)(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = Conv(self.out_channels, (3, 3), kernel_init=zero_init)(h)
    if x.shape[-1] != self.out_channels or self.resample != "none":
      x = Conv(self.out_channels, (1, 1), kernel_init=default_init)(x)
    return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


def _resample(x: jax.Array, how: str) -> jax.Array:
  """2x average-pool down or nearest up, [B, H, W, C]."""
  if how == "down":
    return nn.avg_pool(x, (2, 2), (2, 2))
  batch, height, width, channels = x.shape
  return jax.image.resize(x, (batch, height * 2, width * 2, channels), "nearest")


class AttentionBlock(nn.Module):
  """Single-head spatial self-attention with 1x1 q, k, v and a zero-initialized output
  projection."""

  groups: int
  skip_rescale: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    batch, height, width, channels = x.shape
    h = _norm(self.groups)(x).reshape(batch, height * width, channels)
    q, k, v = (nn.Dense(channels, kernel_init=default_init, name=name)(h) for name in "qkv")
    # softmax of float32 logits q.k / sqrt(C), the weights cast back to v's dtype (mixed precision)
    logits = jnp.einsum("bic,bjc->bij", q, k).astype(jnp.float32) / math.sqrt(channels)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    h = nn.Dense(channels, kernel_init=zero_init, name="proj_out")(
      jnp.einsum("bij,bjc->bic", weights, v)
    )
    out = x + h.reshape(x.shape)
    return out / math.sqrt(2.0) if self.skip_rescale else out


class CrossAttentionBlock(nn.Module):
  """x [B, H, W, C], text tokens [B, L, D_text], mask [B, L] -> x + MHA(GroupNorm(x), tokens,
  mask) [B, H, W, C]: the HW positions query the real tokens; heads of
  CROSS_ATTENTION_HEAD_CHANNELS channels, or one head when C is not a multiple of it; the output
  projection is zero-initialized; skip_rescale divides the sum by sqrt(2) as in AttentionBlock."""

  groups: int
  skip_rescale: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    batch, height, width, channels = x.shape
    head_channels = CROSS_ATTENTION_HEAD_CHANNELS
    heads = 1 if channels % head_channels else channels // head_channels
    h = _norm(self.groups)(x).reshape(batch, height * width, channels)
    h = MultiHeadAttention(heads, default_init, zero_init)(h, tokens, mask)
    out = x + h.reshape(x.shape)
    return out / math.sqrt(2.0) if self.skip_rescale else out


class UNet(nn.Module):
  """eps/v/F network: (x [B, H, W, C], time [B], labels, train) -> [B, H, W, out_channels]
  (out_channels 0: C; conditional models such as sr3 feed extra input channels and set it).
  labels: [B] int in [0, num_classes] when num_classes > 0, the text mapping when context_dim > 0,
  otherwise ignored."""

  channels: int = 128
  channel_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attention_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  embedding: str = "positional"  # or "fourier"
  fourier_scale: float = 16.0
  num_classes: int = 0
  resblock: str = "ddpm"  # or "biggan"
  skip_rescale: bool = False
  groups: int = 32  # GroupNorm groups (must divide every channel count)
  out_channels: int = 0  # channels of the output; 0: as many as the input has
  context_dim: int = 0  # width of the text tokens; 0: no text conditioning or cross-attention
  remat: bool = False  # rematerialise the residual and attention blocks (module docstring)

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    time: jax.Array,
    labels: jax.Array | Mapping[str, jax.Array] | None = None,
    train: bool = False,
  ) -> jax.Array:
    if x.shape[1] % 2 ** (len(self.channel_mult) - 1):
      raise ValueError(
        f"Image size {x.shape[1]} is not divisible by 2^{len(self.channel_mult) - 1} "
        "(one halving per extra model.channel_mult level); pad with data.image_size."
      )
    emb_dim = 4 * self.channels
    if self.embedding == "positional":
      emb = positional_embedding(time, self.channels)
    elif self.embedding == "fourier":
      emb = FourierEmbedding(self.channels, self.fourier_scale)(time)
    else:
      raise ValueError(f"Unknown model.embedding {self.embedding!r}; use positional or fourier.")
    emb = nn.Dense(emb_dim, kernel_init=default_init)(emb)
    emb = nn.Dense(emb_dim, kernel_init=default_init)(nn.swish(emb))
    if self.num_classes and self.context_dim:
      raise ValueError(
        "A UNet is conditioned on classes or on text: set model.num_classes or "
        "model.context_dim, not both."
      )
    if self.num_classes:
      if labels is None:
        raise ValueError("A class-conditional UNet needs labels.")
      emb = emb + nn.Embed(self.num_classes + 1, emb_dim)(labels)
    if self.context_dim:
      text = text_conditioning(labels, self.context_dim)
      emb = emb + nn.Dense(emb_dim, kernel_init=default_init, name="pooled_embedding")(
        text["pooled"]
      )

    remat = lambda cls, static=(): rematerialised(cls, static) if self.remat else cls
    res_block = remat(ResBlock, (3,))  # train: static
    block = lambda ch, resample="none": res_block(
      ch, self.dropout, self.groups, resample, self.skip_rescale
    )

    def attention(h: jax.Array) -> jax.Array:
      h = remat(AttentionBlock)(self.groups, self.skip_rescale)(h)
      if self.context_dim:
        h = remat(CrossAttentionBlock)(self.groups, self.skip_rescale)(
          h, text["tokens"], text["mask"]
        )
      return h

    h = Conv(self.channels, (3, 3), kernel_init=default_init)(x)
    skips = [h]
    levels = len(self.channel_mult)
    for level, mult in enumerate(self.channel_mult):
      for _ in range(self.num_res_blocks):
        h = block(self.channels * mult)(h, emb, train)
        if h.shape[1] in self.attention_resolutions:
          h = attention(h)
        skips.append(h)
      if level != levels - 1:
        if self.resblock == "biggan":
          h = block(h.shape[-1], "down")(h, emb, train)
        else:
          h = Conv(h.shape[-1], (3, 3), strides=(2, 2), kernel_init=default_init)(h)
        skips.append(h)

    h = block(h.shape[-1])(h, emb, train)
    h = attention(h)
    h = block(h.shape[-1])(h, emb, train)

    for level in reversed(range(levels)):
      for _ in range(self.num_res_blocks + 1):
        h = block(self.channels * self.channel_mult[level])(
          jnp.concatenate([h, skips.pop()], axis=-1), emb, train
        )
        if h.shape[1] in self.attention_resolutions:
          h = attention(h)
      if level != 0:
        if self.resblock == "biggan":
          h = block(h.shape[-1], "up")(h, emb, train)
        else:
          h = Conv(h.shape[-1], (3, 3), kernel_init=default_init)(_resample(h, "up"))
    h = nn.swish(_norm(self.groups)(h))
    return Conv(self.out_channels or x.shape[-1], (3, 3), kernel_init=zero_init)(h)
