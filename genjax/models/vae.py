"""VAE networks: Gaussian encoders q(z|x) and decoders that output likelihood parameters.

Encoders map x [B, *shape] to (mean, log_std) [B, *latent_shape]; decoders map z [B, *latent_shape]
to the parameters of p(x|z), [B, *shape[:-1], shape[-1] * params_per_channel] (1 for Bernoulli
logits, 2 for a Gaussian's mean and log-std). latent_shape is (latent_dim,) for the "mlp" and
"conv" networks and (H / f, W / f, latent_channels) for "conv_spatial", latent diffusion's
KL-regularized autoencoder (Rombach et al. 2022), f = 2^len(model.conv_channels).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.models.conv import Conv
from genjax.models.normalization import GroupNorm
from genjax.registry import Registry

ACTIVATIONS = {"tanh": jnp.tanh, "relu": nn.relu, "elu": nn.elu, "gelu": nn.gelu, "swish": nn.swish}


class MLPEncoder(nn.Module):
  """Kingma & Welling / Burda et al.: dense layers, then a dense head for mean and log-std."""

  hidden: Sequence[int]
  latent_dim: int
  activation: str = "tanh"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      h = ACTIVATIONS[self.activation](nn.Dense(width)(h))
    mean = nn.Dense(self.latent_dim, name="mean")(h)
    log_std = nn.Dense(self.latent_dim, name="log_std")(h)
    return mean, log_std


class MLPDecoder(nn.Module):
  """Mirror of MLPEncoder: z -> hidden -> likelihood parameters of every pixel."""

  hidden: Sequence[int]
  out_shape: Sequence[int]  # [*example_shape[:-1], channels * params_per_channel]
  activation: str = "tanh"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = z
    for width in self.hidden:
      h = ACTIVATIONS[self.activation](nn.Dense(width)(h))
    out = nn.Dense(int(np.prod(self.out_shape)))(h)
    return out.reshape(z.shape[0], *self.out_shape)


class ConvEncoder(nn.Module):
  """Strided 4x4 convolutions halving the resolution, then a dense layer and the Gaussian head."""

  channels: Sequence[int]
  dense: int
  latent_dim: int
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    act = ACTIVATIONS[self.activation]
    h = x
    for width in self.channels:
      h = act(nn.Conv(width, (4, 4), strides=(2, 2), padding="SAME")(h))
    h = act(nn.Dense(self.dense)(h.reshape(h.shape[0], -1)))
    return nn.Dense(self.latent_dim, name="mean")(h), nn.Dense(self.latent_dim, name="log_std")(h)


class ConvDecoder(nn.Module):
  """Dense to a [H / 2^L, W / 2^L, C_L] map, then transposed 4x4 convolutions doubling it."""

  channels: Sequence[int]  # encoder order; used reversed
  dense: int
  out_shape: Sequence[int]
  activation: str = "relu"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    act = ACTIVATIONS[self.activation]
    height, width, out_channels = self.out_shape
    levels = len(self.channels)
    factor = 2**levels
    if height % factor or width % factor:
      raise ValueError(f"The conv VAE needs image sides divisible by {factor}, got {height}x{width}.")
    base = (height // factor, width // factor, self.channels[-1])
    h = act(nn.Dense(self.dense)(z))
    h = act(nn.Dense(int(np.prod(base)))(h)).reshape(z.shape[0], *base)
    for channels in list(self.channels[::-1][1:]):
      h = act(nn.ConvTranspose(channels, (4, 4), strides=(2, 2), padding="SAME")(h))
    return nn.ConvTranspose(out_channels, (4, 4), strides=(2, 2), padding="SAME")(h)


class ResidualBlock(nn.Module):
  """Latent diffusion's ResnetBlock without the time embedding: x [B, H, W, C_in] ->
  shortcut(x) + conv3x3(swish(GN(conv3x3(swish(GN(x)))))) [B, H, W, channels], the shortcut a 1x1
  convolution when the channels change (the identity otherwise)."""

  channels: int
  groups: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = Conv(self.channels, (3, 3))(nn.swish(GroupNorm(self.groups)(x)))
    h = Conv(self.channels, (3, 3))(nn.swish(GroupNorm(self.groups)(h)))
    shortcut = x if x.shape[-1] == self.channels else Conv(self.channels, (1, 1))(x)
    return shortcut + h


class SpatialEncoder(nn.Module):
  """x [B, H, W, C] -> (mean, log_std) [B, H / f, W / f, latent_channels], f = 2^len(channels).

  conv3x3 to channels[0]; per stage a residual block to channels[i] and a stride-2 conv3x3; a
  residual block at the latent resolution; GroupNorm, swish, conv3x3 to 2 * latent_channels."""

  channels: Sequence[int]
  latent_channels: int
  groups: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = Conv(self.channels[0], (3, 3))(x)
    for stage_channels in self.channels:
      h = ResidualBlock(stage_channels, self.groups)(h)
      h = Conv(stage_channels, (3, 3), strides=(2, 2), differentiated_twice=False)(h)
    h = ResidualBlock(self.channels[-1], self.groups)(h)
    h = Conv(2 * self.latent_channels, (3, 3))(nn.swish(GroupNorm(self.groups)(h)))
    mean, log_std = jnp.split(h, 2, axis=-1)
    return mean, log_std


class SpatialDecoder(nn.Module):
  """The mirror of SpatialEncoder: z [B, H / f, W / f, latent_channels] -> [B, *out_shape].

  conv3x3 to channels[-1] and a residual block; per stage, from the last, nearest-neighbour 2x
  upsampling, conv3x3 to channels[i] and a residual block; GroupNorm, swish, conv3x3 to the
  likelihood's out_shape[-1] parameters per pixel."""

  channels: Sequence[int]  # encoder order; used reversed
  out_shape: Sequence[int]
  groups: int

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = Conv(self.channels[-1], (3, 3))(z)
    h = ResidualBlock(self.channels[-1], self.groups)(h)
    for stage_channels in self.channels[::-1]:
      batch, height, width, features = h.shape
      h = jax.image.resize(h, (batch, 2 * height, 2 * width, features), "nearest")
      h = ResidualBlock(stage_channels, self.groups)(Conv(stage_channels, (3, 3))(h))
    return Conv(self.out_shape[-1], (3, 3))(nn.swish(GroupNorm(self.groups)(h)))


class VAE(nn.Module):
  """An encoder/decoder pair; __call__ runs both (used by init), the methods run one side.
  latent_shape: the shape of one example's z, (latent_dim,) or (h, w, latent_channels)."""

  encoder: nn.Module
  decoder: nn.Module
  latent_shape: tuple[int, ...]

  def __call__(self, x: jax.Array, z: jax.Array):
    return self.encoder(x), self.decoder(z)

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.encoder(x)

  def decode(self, z: jax.Array) -> jax.Array:
    return self.decoder(z)


VAE_NETWORKS: Registry = Registry("VAE network")


@VAE_NETWORKS.register("mlp")
def mlp_vae(model, example_shape: Sequence[int], params_per_channel: int) -> VAE:
  out_shape = (*example_shape[:-1], example_shape[-1] * params_per_channel)
  return VAE(
    MLPEncoder(tuple(model.hidden), model.latent_dim, model.activation),
    MLPDecoder(tuple(model.hidden)[::-1], out_shape, model.activation),
    (model.latent_dim,),
  )


@VAE_NETWORKS.register("conv")
def conv_vae(model, example_shape: Sequence[int], params_per_channel: int) -> VAE:
  if len(example_shape) != 3:
    raise ValueError(f"The conv VAE needs images [H, W, C]; this dataset's examples are {example_shape}.")
  out_shape = (*example_shape[:-1], example_shape[-1] * params_per_channel)
  channels, dense = tuple(model.conv_channels), model.hidden[0]
  return VAE(
    ConvEncoder(channels, dense, model.latent_dim, model.activation),
    ConvDecoder(channels, dense, out_shape, model.activation),
    (model.latent_dim,),
  )


@VAE_NETWORKS.register("conv_spatial")
def conv_spatial_vae(model, example_shape: Sequence[int], params_per_channel: int) -> VAE:
  """Latents [H / f, W / f, model.latent_channels], f = 2^len(model.conv_channels)."""
  if len(example_shape) != 3:
    raise ValueError(f"The conv_spatial VAE needs images [H, W, C]; this dataset's examples are {example_shape}.")
  height, width, channels = example_shape
  factor = 2 ** len(model.conv_channels)
  if height % factor or width % factor:
    raise ValueError(
      f"The conv_spatial VAE downsamples by {factor} (2^len(model.conv_channels)); the image sides "
      f"{height}x{width} must be multiples of it."
    )
  widths = tuple(model.conv_channels)
  if any(w % model.norm_groups for w in widths):
    raise ValueError(f"model.conv_channels={widths} must be multiples of model.norm_groups={model.norm_groups}.")
  return VAE(
    SpatialEncoder(widths, model.latent_channels, model.norm_groups),
    SpatialDecoder(widths, (height, width, channels * params_per_channel), model.norm_groups),
    (height // factor, width // factor, model.latent_channels),
  )
