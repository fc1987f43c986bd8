"""VAE networks: Gaussian encoders q(z|x) and decoders that output likelihood parameters.

Encoders map x [B, *shape] to (mean, log_std) [B, latent_dim]; decoders map z [B, latent_dim] to
the parameters of p(x|z), [B, *shape[:-1], shape[-1] * params_per_channel] (1 for Bernoulli logits,
2 for a Gaussian's mean and log-std).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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


class VAE(nn.Module):
  """An encoder/decoder pair; __call__ runs both (used by init), the methods run one side."""

  encoder: nn.Module
  decoder: nn.Module

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
  )
