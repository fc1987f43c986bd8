"""GAN generators G(z, labels) -> x and discriminators D(x, labels, update_stats) -> logits [B].

Shapes: z [B, latent_dim]; labels [B] int32 class ids (None for unconditional networks);
images [B, H, W, C] in [-1, 1] (tanh output); 2-D points [B, D] (linear output).

Networks, selected by `model.network`:
  mlp     the MLP GAN (Goodfellow et al. 2014): ReLU G, leaky-ReLU D (model.leaky_slope; 0 gives
          the ReLU D of configs/gan_mnist_mlp.py), widths model.g_features /
          model.d_features; the 2-D toy networks of Metz et al. 2017.
  dcgan   Radford et al. 2016 for 28x28 / 32x32: G projects z to [H/2^L, W/2^L, g_features[0]] and
          doubles the size with L = len(g_features) transposed 4x4 stride-2 convolutions (batch
          norm, ReLU, tanh output); D halves it with len(d_features) strided 4x4 convolutions
          (leaky ReLU, batch norm except on the first layer, model.d_norm) and a dense logit.
          N(0, 0.02) init.
  resnet  the CIFAR-10 ResNets of Gulrajani et al. 2017 (WGAN-GP) and Miyato et al. 2018 (SNGAN):
          G: dense to 4x4, one up-sampling residual block per entry of g_features, BN, ReLU, 3x3
          conv, tanh. D: residual blocks (the first an "optimized" block), average-pool
          down-sampling where model.d_downsample says so, ReLU, global sum (SNGAN) or mean
          (WGAN-GP) pooling, dense.

Class conditioning (model.conditional): generators use conditional batch norm (per-class gain and
bias, de Vries et al. 2017; Miyato & Koyama 2018) or, in the MLP, a label embedding concatenated to
z; discriminators add the projection term <embed(y), phi(x)> (Miyato & Koyama 2018).

Batch norm (`BatchNorm` in G, flax's in D) keeps no running averages. In training it normalizes
with the current batch's statistics (apply with mutable=["batch_stats"] and drop the result); the
discriminator only ever runs this way. Generators sample with fixed statistics instead, so that a
sample depends on its own z and label alone: G(z, labels, use_running_average=True) normalizes
with the "batch_stats" collection it is given, the "standing statistics" (Brock et al. 2019) that
the GAN family estimates for the weights it samples with from sampling.standing_stats_samples
latents (genjax.families.gan.GANFamily.standing_statistics).
Spectral normalization (model.spectral_norm) wraps every discriminator layer with weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax.models.conv import Conv, transposed_conv_4x4
from genjax.models.spectral_norm import spectral_normalized
from genjax.registry import Registry

DCGAN_INIT = nn.initializers.normal(0.02)
RESIDUAL_INIT = nn.initializers.variance_scaling(2.0, "fan_avg", "uniform")  # Xavier, gain sqrt(2)
XAVIER_INIT = nn.initializers.xavier_uniform()


class BatchNorm(nn.Module):
  """Batch norm of x [B, ..., C] over all axes but the last (eps 1e-5).

  use_running_average=False (training): normalizes with this batch's mean and biased variance and,
  with momentum 0, leaves exactly them as the "batch_stats" collection's `mean` and `var` [C].
  use_running_average=True (sampling): normalizes with the `mean` and `var` of the "batch_stats"
  collection it is given. With num_classes > 0 the gain and bias are looked up per example from
  class embeddings (conditional batch norm)."""

  num_classes: int = 0

  @nn.compact
  def __call__(
    self, x: jax.Array, labels: jax.Array | None, use_running_average: bool = False
  ) -> jax.Array:
    conditional = self.num_classes > 0
    h = nn.BatchNorm(
      use_running_average=use_running_average,
      momentum=0.0,
      use_scale=not conditional,
      use_bias=not conditional,
    )(x)
    if not conditional:
      return h
    features = x.shape[-1]
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (features,)
    gain = nn.Embed(self.num_classes, features, embedding_init=nn.initializers.ones, name="gain")(
      labels
    )
    bias = nn.Embed(self.num_classes, features, embedding_init=nn.initializers.zeros, name="bias")(
      labels
    )
    return h * gain.reshape(shape) + bias.reshape(shape)


def _normalize(kind: str, x: jax.Array) -> jax.Array:
  """Discriminator normalization: "batch" (batch statistics), "layer" (per example) or "none"."""
  if kind == "batch":
    return nn.BatchNorm(use_running_average=False, momentum=0.9)(x)
  if kind == "layer":
    return nn.LayerNorm(reduction_axes=tuple(range(1, x.ndim)), feature_axes=-1)(x)
  return x


def _projection(
  num_classes: int,
  features: jax.Array,
  labels: jax.Array | None,
  spectral_norm: bool,
  update_stats: bool,
) -> jax.Array:
  """Miyato & Koyama's projection term <embed(y), phi(x)> [B]; zero when unconditional."""
  if not num_classes:
    return jnp.zeros(features.shape[:1], features.dtype)
  embed = nn.Embed(num_classes, features.shape[-1], embedding_init=XAVIER_INIT, name="projection")
  return jnp.sum(
    spectral_normalized(embed, spectral_norm, update_stats)(labels) * features, axis=-1
  )


class TransposedConv4x4(nn.Module):
  """Up-sampling by 2: x [B, H, W, C_in] -> [B, 2H, 2W, features], the transposed convolution with
  a 4x4 kernel, stride 2 and padding 1 of DCGAN (PyTorch ConvTranspose2d(4, 2, 1)):
    out[2j + a] = sum of x[i] w[k] over 2i + k - 1 = 2j + a,   per spatial axis.
  kernel [4, 4, C_in, features], computed by genjax.models.conv.transposed_conv_4x4."""

  features: int
  use_bias: bool = True
  kernel_init: Callable = DCGAN_INIT

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features))
    out = transposed_conv_4x4(x, kernel)
    if self.use_bias:
      out = out + self.param("bias", nn.initializers.zeros, (self.features,))
    return out


# --- MLP ----------------------------------------------------------------------------------------


class MLPGenerator(nn.Module):
  features: Sequence[int]
  out_shape: Sequence[int]
  num_classes: int = 0
  tanh_output: bool = True

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    h = z
    if self.num_classes:
      h = jnp.concatenate(
        [z, nn.Embed(self.num_classes, z.shape[-1], name="label_embedding")(labels)], -1
      )
    for width in self.features:
      h = nn.relu(nn.Dense(width)(h))
    out = nn.Dense(int(np.prod(self.out_shape)))(h).reshape(z.shape[0], *self.out_shape)
    return jnp.tanh(out) if self.tanh_output else out


class MLPDiscriminator(nn.Module):
  features: Sequence[int]
  num_classes: int = 0
  spectral_norm: bool = False
  leaky_slope: float = 0.2

  @nn.compact
  def __call__(
    self, x: jax.Array, labels: jax.Array | None = None, update_stats: bool = False
  ) -> jax.Array:
    h = x.reshape(x.shape[0], -1)
    for width in self.features:
      h = nn.leaky_relu(
        spectral_normalized(nn.Dense(width), self.spectral_norm, update_stats)(h), self.leaky_slope
      )
    logits = spectral_normalized(nn.Dense(1), self.spectral_norm, update_stats)(h)[:, 0]
    return logits + _projection(self.num_classes, h, labels, self.spectral_norm, update_stats)


# --- DCGAN --------------------------------------------------------------------------------------


class DCGANGenerator(nn.Module):
  features: Sequence[int]  # channels from the smallest resolution up, e.g. (256, 128, 64)
  out_shape: Sequence[int]  # [H, W, C]
  num_classes: int = 0
  batch_norm: bool = True

  @nn.compact
  def __call__(
    self, z: jax.Array, labels: jax.Array | None = None, use_running_average: bool = False
  ) -> jax.Array:
    height, width, channels = self.out_shape
    scale = 2 ** len(self.features)
    base_h, base_w = height // scale, width // scale

    def norm_relu(h):
      if not self.batch_norm:
        return nn.relu(h)
      return nn.relu(BatchNorm(self.num_classes)(h, labels, use_running_average))

    h = nn.Dense(
      base_h * base_w * self.features[0], use_bias=not self.batch_norm, kernel_init=DCGAN_INIT
    )(z)
    h = norm_relu(h.reshape(z.shape[0], base_h, base_w, self.features[0]))
    for width_out in self.features[1:]:
      h = TransposedConv4x4(width_out, use_bias=not self.batch_norm)(h)
      h = norm_relu(h)
    h = TransposedConv4x4(channels)(h)
    return jnp.tanh(h)


class DCGANDiscriminator(nn.Module):
  """differentiated_twice: training differentiates D's input gradient (a gradient penalty or R1),
  which genjax.models.conv.Conv takes into account when it chooses how to compute the strided
  convolutions."""

  features: Sequence[int]  # e.g. (64, 128, 256)
  num_classes: int = 0
  norm: str = "batch"
  spectral_norm: bool = False
  leaky_slope: float = 0.2
  differentiated_twice: bool = False

  @nn.compact
  def __call__(
    self, x: jax.Array, labels: jax.Array | None = None, update_stats: bool = False
  ) -> jax.Array:
    h = x
    for index, width in enumerate(self.features):
      normalized = index > 0 and self.norm != "none"
      conv = Conv(
        width,
        (4, 4),
        strides=(2, 2),
        padding="SAME",
        use_bias=not normalized,
        kernel_init=DCGAN_INIT,
        differentiated_twice=self.differentiated_twice,
      )
      h = spectral_normalized(conv, self.spectral_norm, update_stats)(h)
      if normalized:
        h = _normalize(self.norm, h)
      h = nn.leaky_relu(h, self.leaky_slope)
    features = h.reshape(h.shape[0], -1)
    dense = nn.Dense(1, kernel_init=DCGAN_INIT)
    logits = spectral_normalized(dense, self.spectral_norm, update_stats)(features)[:, 0]
    return logits + _projection(
      self.num_classes, features, labels, self.spectral_norm, update_stats
    )


# --- ResNet (SNGAN / WGAN-GP CIFAR-10) ----------------------------------------------------------


def _upsample(x: jax.Array) -> jax.Array:
  """Nearest-neighbour 2x up-sampling of [B, H, W, C]."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _downsample(x: jax.Array) -> jax.Array:
  """2x2 average pooling of [B, H, W, C]."""
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


class GeneratorBlock(nn.Module):
  """BN-ReLU-up-conv3x3-BN-ReLU-conv3x3, plus up-sampled 1x1-conv shortcut."""

  features: int
  num_classes: int = 0

  @nn.compact
  def __call__(
    self, x: jax.Array, labels: jax.Array | None, use_running_average: bool = False
  ) -> jax.Array:
    h = nn.relu(BatchNorm(self.num_classes)(x, labels, use_running_average))
    h = nn.Conv(self.features, (3, 3), kernel_init=RESIDUAL_INIT)(_upsample(h))
    h = nn.relu(BatchNorm(self.num_classes)(h, labels, use_running_average))
    h = nn.Conv(self.features, (3, 3), kernel_init=RESIDUAL_INIT)(h)
    shortcut = nn.Conv(self.features, (1, 1), kernel_init=XAVIER_INIT, name="shortcut")(
      _upsample(x)
    )
    return h + shortcut


class DiscriminatorBlock(nn.Module):
  """[ReLU]-conv3x3-ReLU-conv3x3-[avgpool] plus a shortcut (a 1x1 conv when the shape changes).

  The first ("optimized") block starts with the convolution, as its input is the image."""

  features: int
  downsample: bool
  first: bool = False
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, update_stats: bool) -> jax.Array:
    def conv(kernel: int, init: Callable, name: str | None = None):
      layer = nn.Conv(self.features, (kernel, kernel), kernel_init=init, name=name)
      return spectral_normalized(layer, self.spectral_norm, update_stats)

    h = x if self.first else nn.relu(x)
    h = conv(3, RESIDUAL_INIT)(h)
    h = conv(3, RESIDUAL_INIT)(nn.relu(h))
    if self.downsample:
      h = _downsample(h)
    if self.downsample or x.shape[-1] != self.features:
      # Average pooling and a 1x1 convolution commute, so the order does not matter.
      shortcut = conv(1, XAVIER_INIT, name="shortcut")(x)
      x = _downsample(shortcut) if self.downsample else shortcut
    return h + x


class ResNetGenerator(nn.Module):
  features: Sequence[int]  # channels of each up-sampling block, e.g. (256, 256, 256)
  out_shape: Sequence[int]
  num_classes: int = 0

  @nn.compact
  def __call__(
    self, z: jax.Array, labels: jax.Array | None = None, use_running_average: bool = False
  ) -> jax.Array:
    height, width, channels = self.out_shape
    scale = 2 ** len(self.features)
    base_h, base_w = height // scale, width // scale
    h = nn.Dense(base_h * base_w * self.features[0], kernel_init=XAVIER_INIT)(z)
    h = h.reshape(z.shape[0], base_h, base_w, self.features[0])
    for width_out in self.features:
      h = GeneratorBlock(width_out, self.num_classes)(h, labels, use_running_average)
    h = nn.relu(BatchNorm()(h, None, use_running_average))
    return jnp.tanh(nn.Conv(channels, (3, 3), kernel_init=XAVIER_INIT)(h))


class ResNetDiscriminator(nn.Module):
  features: Sequence[int]  # channels of each block, e.g. (128, 128, 128, 128)
  downsample: Sequence[bool]  # e.g. (True, True, False, False)
  num_classes: int = 0
  spectral_norm: bool = False
  pooling: str = "sum"

  @nn.compact
  def __call__(
    self, x: jax.Array, labels: jax.Array | None = None, update_stats: bool = False
  ) -> jax.Array:
    h = x
    for index, (width, down) in enumerate(zip(self.features, self.downsample, strict=True)):
      h = DiscriminatorBlock(width, down, first=index == 0, spectral_norm=self.spectral_norm)(
        h, update_stats
      )
    h = nn.relu(h)
    features = h.sum(axis=(1, 2)) if self.pooling == "sum" else h.mean(axis=(1, 2))
    dense = nn.Dense(1, kernel_init=XAVIER_INIT)
    logits = spectral_normalized(dense, self.spectral_norm, update_stats)(features)[:, 0]
    return logits + _projection(
      self.num_classes, features, labels, self.spectral_norm, update_stats
    )


# --- the registry ---------------------------------------------------------------------------------

NetworkBuilder = Callable[
  [ml_collections.ConfigDict, tuple, int, bool], tuple[nn.Module, nn.Module]
]
GAN_NETWORKS: Registry[NetworkBuilder] = Registry("GAN network")


def _check_choice(key: str, value: str, valid: Sequence[str]) -> None:
  if value not in valid:
    raise ValueError(f"Unknown model.{key} {value!r}; valid values: {', '.join(valid)}.")


def _check_image(network: str, shape: tuple, num_upsamplings: int) -> None:
  if len(shape) != 3:
    raise ValueError(
      f"model.network={network!r} needs images [H, W, C], but examples have shape {shape}; "
      "use model.network='mlp' for points."
    )
  scale = 2**num_upsamplings
  if shape[0] % scale or shape[1] % scale:
    raise ValueError(
      f"model.network={network!r} with {num_upsamplings} up-sampling layers "
      "(len(model.g_features)) "
      f"needs H and W divisible by {scale}, got {shape[0]}x{shape[1]}. For 28x28 MNIST use two "
      "generator layers (e.g. model.g_features=(128, 64)) or zero-pad with data.image_size=32."
    )


@GAN_NETWORKS.register("mlp")
def build_mlp(model, shape, num_classes, is_image):
  return (
    MLPGenerator(tuple(model.g_features), tuple(shape), num_classes, tanh_output=is_image),
    MLPDiscriminator(tuple(model.d_features), num_classes, model.spectral_norm, model.leaky_slope),
  )


@GAN_NETWORKS.register("dcgan")
def build_dcgan(model, shape, num_classes, is_image):
  _check_image("dcgan", shape, len(model.g_features))
  _check_choice("g_norm", model.g_norm, ("batch", "none"))
  _check_choice("d_norm", model.d_norm, ("batch", "layer", "none"))
  return (
    DCGANGenerator(
      tuple(model.g_features), tuple(shape), num_classes, batch_norm=model.g_norm == "batch"
    ),
    DCGANDiscriminator(
      tuple(model.d_features),
      num_classes,
      model.d_norm,
      model.spectral_norm,
      model.leaky_slope,
      differentiated_twice=model.gradient_penalty > 0 or model.r1_gamma > 0,
    ),
  )


@GAN_NETWORKS.register("resnet")
def build_resnet(model, shape, num_classes, is_image):
  _check_image("resnet", shape, len(model.g_features))
  _check_choice("d_pooling", model.d_pooling, ("sum", "mean"))
  if len(model.d_downsample) != len(model.d_features):
    raise ValueError(
      f"model.d_downsample {tuple(model.d_downsample)} needs one entry per block of "
      f"model.d_features {tuple(model.d_features)}."
    )
  return (
    ResNetGenerator(tuple(model.g_features), tuple(shape), num_classes),
    ResNetDiscriminator(
      tuple(model.d_features),
      tuple(model.d_downsample),
      num_classes,
      model.spectral_norm,
      model.d_pooling,
    ),
  )
