"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"), as
configured by StyleGAN2-ADA (Karras et al. 2020, "Training Generative Adversarial Networks with
Limited Data"): the "skip" generator and the "resnet" (or "orig") discriminator. NHWC throughout;
images [B, H, W, C] in [-1, 1] (no tanh: the generator's output is linear).

Equalised learning rate. Every weight is stored as N(0, 1) / lr_multiplier and multiplied at run
time by lr_multiplier / sqrt(fan_in) (biases by lr_multiplier), so Adam's steps have the same
relative size in every layer, and lr_multiplier scales a layer's effective learning rate (0.01
in the mapping network). Activations are leaky ReLU (slope 0.2) times sqrt(2) ("bias and
activation with gain"), optionally clamped to +-conv_clamp.

Generator G(z, y) = synthesis(mapping(z, y)):
  mapping    w = MLP(normalize(z) ++ normalize(embed(onehot(y))))   [B, w_dim]
             (normalize(v) = v / sqrt(mean(v^2) + 1e-8); mapping_layers equalised layers), then
             broadcast to ws [B, num_ws, w_dim]. Truncation: ws <- w_avg + psi (ws - w_avg), with
             w_avg ("buffers" collection) the moving average of w that training keeps.
  synthesis  a learned constant [4, 4, C] and one block per resolution 4, 8, ..., resolution with
             C(res) = min(channel_base / res, channel_max) channels. Each block: (from 8x8 on) a
             modulated 3x3 convolution that upsamples by 2, a modulated 3x3 convolution, and a
             toRGB (modulated 1x1 convolution without demodulation) whose output is added to the
             upsampled image of the blocks before ("skip" architecture). A block's layers read
             consecutive entries of ws; its toRGB shares its w with the next block's first layer.
  modulated convolution (weight demodulation): with styles s = affine(w) [B, C_in],
             y = conv(x * s, weight) * d,   d[b, o] = 1 / sqrt(sum_{c,kh,kw} (s[b,c] weight)^2 + 1e-8),
             so unit-variance inputs give unit-variance outputs; then per-pixel noise
             [B, H, W, 1] times a learned strength (initially 0) is added, then bias and
             activation.
Discriminator D(x, y): one block per resolution from `resolution` down to 8 (fromRGB 1x1 at the
  first; 3x3 conv; 3x3 conv that downsamples by 2; "resnet" adds a 1x1 downsampling shortcut and
  scales both paths by sqrt(1/2)), then the epilogue at 4x4: minibatch standard deviation
  (mbstd_channels extra channels, officially one: the std over groups of mbstd_group_size
  examples, averaged over the pixels and each channel's slice of the features), a 3x3 conv, a
  dense layer, and the output. Conditional: a mapping network (8 layers, lr 0.01) embeds the
  label to cmap [B, cmap_dim] and the logit is <out(x), cmap> / sqrt(cmap_dim) (a projection
  discriminator).

Resampling uses the FIR filter f = [1, 3, 3, 1]^T [1, 3, 3, 1] / 64 (normalised to sum 1):
  upsample2d(x)    zero insertion (x at even positions), then correlation with 4 f padded (2, 1)
  downsample2d(x)  correlation with f padded (1, 1), keeping every second pixel
  up-convolution   a stride-2 transposed convolution, then correlation with 4 f padded (1, 1)
  down-convolution correlation with f padded (2, 2), then a stride-2 valid convolution
which reproduce the official implementation's upfirdn2d and conv2d_resample to float precision
(tests/test_stylegan2.py compares them with its outputs). Parameter names follow the official
module names (b4, conv0, torgb, affine, fc0, ...), so a state dict maps onto them one to one.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax.backend import uses_matmul_formulations
from genjax.models.conv import conv_general_dilated, patches_conv, transposed_conv_full

LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2.0)  # the gain that keeps leaky ReLU variance-preserving
NOISE_MODES = ("random", "const", "none")
_NHWC = ("NHWC", "HWIO", "NHWC")
_unit_normal = nn.initializers.normal(1.0)


def bias_act(
  x: jax.Array, bias: jax.Array | None, activation: str, gain: float = 1.0, clamp: float = 0.0
) -> jax.Array:
  """act(x + bias) * gain, clamped to +-clamp * gain when clamp > 0; act is "linear" or "lrelu"
  (leaky ReLU 0.2 times sqrt 2)."""
  if bias is not None:
    x = x + bias
  if activation == "lrelu":
    x = nn.leaky_relu(x, LEAKY_SLOPE) * LEAKY_GAIN
  elif activation != "linear":
    raise ValueError(f"Unknown activation {activation!r}; use 'linear' or 'lrelu'.")
  if gain != 1.0:
    x = x * gain
  if clamp > 0:
    x = jnp.clip(x, -clamp * gain, clamp * gain)
  return x


def normalize_2nd_moment(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  """x / sqrt(mean(x^2 over the last axis) + eps)."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


# The resampling filter f = FILTER_TAPS^T FILTER_TAPS ([1, 3, 3, 1]^T [1, 3, 3, 1] / 64).
FILTER_TAPS = np.array([1.0, 3.0, 3.0, 1.0]) / 8.0


def _fir(x: jax.Array, pad: tuple[int, int], stride: int = 1, gain: float = 1.0) -> jax.Array:
  """Per-channel correlation of x [B, H, W, C] with f * gain (symmetric, so equal to
  a convolution), zero-padded by pad = (before, after) on both spatial axes, keeping every
  stride-th output. The filter is separable: four shifted, weighted slices per spatial axis."""
  taps = FILTER_TAPS * math.sqrt(gain)
  for axis in (1, 2):
    widths = [(0, 0)] * 4
    widths[axis] = pad
    padded = jnp.pad(x, widths)
    length = padded.shape[axis] - len(taps) + 1
    x = sum(
      float(weight) * jax.lax.slice_in_dim(padded, tap, tap + length, axis=axis)
      for tap, weight in enumerate(taps)
    )
    if stride > 1:
      x = jax.lax.slice_in_dim(x, 0, length, stride, axis=axis)
  return x


def _zero_insert(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C] with x at the even rows and columns, zeros elsewhere."""
  zero = jnp.zeros((), x.dtype)
  return jax.lax.pad(x, zero, ((0, 0, 0), (0, 1, 1), (0, 1, 1), (0, 0, 0)))


def upsample2d(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C]: zero insertion, then the filter (gain 4) padded (2, 1)."""
  return _fir(_zero_insert(x), (2, 1), gain=4.0)


def downsample2d(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H/2, W/2, C]: the filter padded (1, 1), every second pixel."""
  return _fir(x, (1, 1), stride=2)


def _correlate(
  x: jax.Array,
  kernel: jax.Array,
  pad: tuple[int, int],
  stride: int = 1,
  differentiated_twice: bool = False,
) -> jax.Array:
  """Correlation of x [B, H, W, C_in] with kernel [k, k, C_in, C_out], zero-padded by pad on
  both spatial axes. differentiated_twice: the call is differentiated to second order (R1, path
  length), which on CPU makes a k > 1 correlation one matmul of patches
  (genjax.models.conv.patches_conv; 3-10x faster there than XLA:CPU's second-order convolutions
  in a whole step, and slower in first order, so only then)."""
  if differentiated_twice and kernel.shape[0] > 1 and uses_matmul_formulations():
    return patches_conv(x, kernel, (stride, stride), (pad, pad))
  return conv_general_dilated(
    x, kernel, (stride, stride), (pad, pad), dimension_numbers=_NHWC, differentiated_twice=False
  )


def conv_up(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The upsampling 3x3 convolution [B, H, W, C_in] -> [B, 2H, 2W, C_out]: the stride-2
  transposed convolution out[n] = sum_i x[i] kernel[n - 2i] (per axis; length 2H + 1), then the
  filter (gain 4) padded (1, 1). kernel [k, k, C_in, C_out], k <= 4."""
  # transposed_conv_full's trailing zero row/column adds one output that the filter's padding
  # drops.
  return _fir(transposed_conv_full(x, kernel), (1, 0), gain=4.0)


def conv_down(x: jax.Array, kernel: jax.Array, differentiated_twice: bool = False) -> jax.Array:
  """The downsampling convolution [B, H, W, C_in] -> [B, H/2, W/2, C_out]: a 1x1 kernel after
  downsample2d; a k x k kernel (k > 1) after the filter padded (k//2 + 1, k//2 + 1), as a
  stride-2 valid correlation (see `_correlate` for differentiated_twice)."""
  if kernel.shape[0] == 1:
    return _correlate(downsample2d(x), kernel, (0, 0))
  pad = kernel.shape[0] // 2 + 1
  return _correlate(_fir(x, (pad, pad)), kernel, (0, 0), 2, differentiated_twice)


class Dense(nn.Module):
  """Equalised dense layer: y = act(x @ (weight * lr / sqrt(fan_in)) + bias * lr);
  weight [fan_in, features] ~ N(0, 1) / lr, bias initialised to bias_init."""

  features: int
  activation: str = "linear"
  lr_multiplier: float = 1.0
  bias_init: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in = x.shape[-1]
    weight = self.param(
      "weight",
      lambda key, shape: jax.random.normal(key, shape) / self.lr_multiplier,
      (fan_in, self.features),
    )
    bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
    y = x @ (weight * (self.lr_multiplier / math.sqrt(fan_in)))
    return bias_act(y, bias * self.lr_multiplier, self.activation)


class Conv(nn.Module):
  """Equalised convolution (weight [k, k, C_in, C_out] ~ N(0, 1), times 1 / sqrt(k^2 C_in)),
  "same" padding, or downsampling by 2 (`down`; `conv_down` for differentiated_twice), then
  bias_act with `gain`."""

  features: int
  kernel_size: int
  activation: str = "linear"
  down: bool = False
  use_bias: bool = True
  conv_clamp: float = 0.0
  differentiated_twice: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, gain: float = 1.0) -> jax.Array:
    size = self.kernel_size
    weight = self.param("weight", _unit_normal, (size, size, x.shape[-1], self.features))
    weight = weight / math.sqrt(size * size * x.shape[-1])
    if self.down:
      y = conv_down(x, weight, self.differentiated_twice)
    else:
      y = _correlate(
        x, weight, (size // 2, size // 2), differentiated_twice=self.differentiated_twice
      )
    bias = self.param("bias", nn.initializers.zeros, (self.features,)) if self.use_bias else None
    return bias_act(y, bias, self.activation, gain, self.conv_clamp)


def modulated_conv(
  x: jax.Array,
  weight: jax.Array,
  styles: jax.Array,
  demodulate: bool = True,
  up: bool = False,
  differentiated_twice: bool = False,
) -> jax.Array:
  """conv(x * s, weight) * d: x [B, H, W, C_in], weight [k, k, C_in, C_out], styles s [B, C_in];
  d[b, o] = 1 / sqrt(sum_{c, kh, kw} (s[b, c] weight[kh, kw, c, o])^2 + 1e-8) with `demodulate`,
  else 1. Scaling the input and output instead of the weights per example is the official
  non-fused form: one convolution with the shared weights for the whole batch. up: `conv_up`;
  differentiated_twice: see `_correlate`."""
  size = weight.shape[0]
  x = x * styles[:, None, None, :]
  if up:
    x = conv_up(x, weight)
  else:
    x = _correlate(x, weight, (size // 2, size // 2), differentiated_twice=differentiated_twice)
  if not demodulate:
    return x
  demodulation = jax.lax.rsqrt(jnp.square(styles) @ jnp.sum(jnp.square(weight), (0, 1)) + 1e-8)
  return x * demodulation[:, None, None, :]


def _affine(features: int, lr_multiplier: float) -> Dense:
  """The style layer A: w -> styles [B, features], biases starting at 1 whatever lr_multiplier
  (stored as 1 / lr_multiplier), so lr_multiplier changes only how fast A learns."""
  return Dense(features, lr_multiplier=lr_multiplier, bias_init=1.0 / lr_multiplier, name="affine")


def _check_noise_mode(noise_mode: str) -> None:
  if noise_mode not in NOISE_MODES:
    raise ValueError(f"Unknown noise_mode {noise_mode!r}; use one of {', '.join(NOISE_MODES)}.")


class SynthesisLayer(nn.Module):
  """Modulated, demodulated 3x3 convolution (upsampling by 2 when `up`), plus noise, bias and
  leaky ReLU: x [B, r, r, C_in] (r = resolution / 2 when up) and w [B, w_dim] ->
  [B, resolution, resolution, features]. noise_mode: "random" (fresh N(0, 1) noise from the
  "noise" RNG stream), "const" (the fixed noise_const of the "buffers" collection) or "none"."""

  features: int
  resolution: int
  up: bool = False
  conv_clamp: float = 0.0
  differentiated_twice: bool = False
  affine_lr: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array, noise_mode: str) -> jax.Array:
    styles = _affine(x.shape[-1], self.affine_lr)(w)  # [B, C_in]
    weight = self.param("weight", _unit_normal, (3, 3, x.shape[-1], self.features))
    x = modulated_conv(
      x, weight, styles, up=self.up, differentiated_twice=self.differentiated_twice
    )
    noise_const = self.variable(
      "buffers",
      "noise_const",
      lambda: jax.random.normal(self.make_rng("params"), (self.resolution, self.resolution)),
    )
    strength = self.param("noise_strength", nn.initializers.zeros, ())
    if noise_mode == "random":
      shape = (x.shape[0], self.resolution, self.resolution, 1)
      x = x + jax.random.normal(self.make_rng("noise"), shape, x.dtype) * strength
    elif noise_mode == "const":
      x = x + noise_const.value[None, :, :, None] * strength
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    return bias_act(x, bias, "lrelu", clamp=self.conv_clamp)


class ToRGB(nn.Module):
  """Modulated 1x1 convolution without demodulation (styles scaled by 1 / sqrt(C_in)), plus bias:
  x [B, H, W, C_in], w [B, w_dim] -> [B, H, W, channels]."""

  channels: int
  conv_clamp: float = 0.0
  affine_lr: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
    styles = _affine(x.shape[-1], self.affine_lr)(w) / math.sqrt(x.shape[-1])
    weight = self.param("weight", _unit_normal, (1, 1, x.shape[-1], self.channels))
    y = modulated_conv(x, weight, styles, demodulate=False)
    bias = self.param("bias", nn.initializers.zeros, (self.channels,))
    return bias_act(y, bias, "linear", clamp=self.conv_clamp)


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
  """C(res) = min(channel_base / res, channel_max), the official channel schedule."""
  return min(channel_base // resolution, channel_max)


def block_resolutions(resolution: int) -> list[int]:
  """[4, 8, ..., resolution]; resolution must be a power of two >= 4."""
  if resolution < 4 or resolution & (resolution - 1):
    raise ValueError(f"StyleGAN2 needs a power-of-two resolution >= 4, got {resolution}.")
  return [2**i for i in range(2, int(math.log2(resolution)) + 1)]


def num_ws(resolution: int) -> int:
  """Entries of ws the synthesis network reads: two per block (one at 4x4) plus the last toRGB."""
  return 2 * len(block_resolutions(resolution))


class SynthesisNetwork(nn.Module):
  """ws [B, num_ws, w_dim] -> images [B, resolution, resolution, channels]."""

  resolution: int
  channels: int
  channel_base: int
  channel_max: int
  conv_clamp: float = 0.0
  differentiated_twice: bool = False  # see `_correlate`
  affine_lr: float = 1.0  # learning-rate multiplier of every layer's style affine (official: 1)

  @nn.compact
  def __call__(self, ws: jax.Array, noise_mode: str = "random") -> jax.Array:
    _check_noise_mode(noise_mode)
    expected = num_ws(self.resolution)
    if ws.shape[1] != expected:
      raise ValueError(
        f"ws has {ws.shape[1]} entries; resolution {self.resolution} needs {expected}."
      )
    x = image = None
    w_index = 0  # the block's first w; its toRGB reads w_index + (number of its convolutions)
    for res in block_resolutions(self.resolution):
      features = channels_at(res, self.channel_base, self.channel_max)
      common = {
        "conv_clamp": self.conv_clamp,
        "differentiated_twice": self.differentiated_twice,
        "affine_lr": self.affine_lr,
      }
      if x is None:
        const = self.param("const", _unit_normal, (res, res, features))
        x = jnp.broadcast_to(const, (ws.shape[0], *const.shape))
        layers = [SynthesisLayer(features, res, **common, name=f"b{res}_conv1")]
      else:
        layers = [
          SynthesisLayer(features, res, up=True, **common, name=f"b{res}_conv0"),
          SynthesisLayer(features, res, **common, name=f"b{res}_conv1"),
        ]
      for offset, layer in enumerate(layers):
        x = layer(x, ws[:, w_index + offset], noise_mode)
      rgb = ToRGB(self.channels, self.conv_clamp, self.affine_lr, name=f"b{res}_torgb")(
        x, ws[:, w_index + len(layers)]
      )
      image = rgb if image is None else upsample2d(image) + rgb
      w_index += len(layers)
    return image


class MappingNetwork(nn.Module):
  """(z [B, z_dim] or None, labels [B] or None) -> w [B, w_dim], broadcast to [B, broadcast,
  w_dim] when broadcast > 0 and then truncated towards w_avg: ws = w_avg + psi (ws - w_avg) for
  the first `truncation_cutoff` entries (all when None). track_w_avg keeps w_avg [w_dim] in the
  "buffers" collection (the GAN family updates it; here it is only read)."""

  w_dim: int
  num_layers: int
  num_classes: int = 0
  lr_multiplier: float = 0.01
  track_w_avg: bool = True

  @nn.compact
  def __call__(
    self,
    z: jax.Array | None,
    labels: jax.Array | None = None,
    broadcast: int = 0,
    truncation_psi: float | jax.Array = 1.0,
    truncation_cutoff: int | None = None,
  ) -> jax.Array:
    parts = [] if z is None else [normalize_2nd_moment(z)]
    if self.num_classes:
      onehot = jax.nn.one_hot(labels, self.num_classes)
      parts.append(normalize_2nd_moment(Dense(self.w_dim, name="embed")(onehot)))
    x = jnp.concatenate(parts, axis=-1)
    for index in range(self.num_layers):
      x = Dense(self.w_dim, "lrelu", self.lr_multiplier, name=f"fc{index}")(x)
    if not self.track_w_avg:
      return x
    w_avg = self.variable("buffers", "w_avg", lambda: jnp.zeros((self.w_dim,))).value
    if not broadcast:
      return x
    ws = jnp.broadcast_to(x[:, None], (x.shape[0], broadcast, self.w_dim))
    truncated = w_avg + truncation_psi * (ws - w_avg)
    cutoff = broadcast if truncation_cutoff is None else truncation_cutoff
    return jnp.concatenate([truncated[:, :cutoff], ws[:, cutoff:]], axis=1)


class StyleGAN2Generator(nn.Module):
  """G(z [B, z_dim], labels [B] or None) -> [B, resolution, resolution, channels]; `mapping` and
  `synthesis` are also callable alone (apply(..., method="map" / "synthesize"))."""

  resolution: int
  channels: int
  w_dim: int = 512
  num_classes: int = 0
  channel_base: int = 32768
  channel_max: int = 512
  mapping_layers: int = 8
  mapping_lr: float = 0.01
  conv_clamp: float = 0.0
  differentiated_twice: bool = False  # the synthesis network's; see `_correlate`
  affine_lr: float = 1.0  # the synthesis network's

  def setup(self):
    self.mapping = MappingNetwork(
      self.w_dim, self.mapping_layers, self.num_classes, self.mapping_lr, track_w_avg=True
    )
    self.synthesis = SynthesisNetwork(
      self.resolution,
      self.channels,
      self.channel_base,
      self.channel_max,
      self.conv_clamp,
      self.differentiated_twice,
      self.affine_lr,
    )

  @property
  def num_ws(self) -> int:
    return num_ws(self.resolution)

  def map(
    self,
    z: jax.Array,
    labels: jax.Array | None = None,
    truncation_psi: float | jax.Array = 1.0,
    truncation_cutoff: int | None = None,
  ) -> jax.Array:
    """ws [B, num_ws, w_dim] for z and labels, truncated towards w_avg by psi."""
    return self.mapping(z, labels, self.num_ws, truncation_psi, truncation_cutoff)

  def synthesize(self, ws: jax.Array, noise_mode: str = "random") -> jax.Array:
    return self.synthesis(ws, noise_mode)

  def __call__(
    self,
    z: jax.Array,
    labels: jax.Array | None = None,
    truncation_psi: float | jax.Array = 1.0,
    noise_mode: str = "const",
  ) -> jax.Array:
    return self.synthesize(self.map(z, labels, truncation_psi), noise_mode)


def minibatch_std(x: jax.Array, group_size: int, num_channels: int = 1) -> jax.Array:
  """x [N, H, W, C] ++ the minibatch standard deviation [N, H, W, num_channels].

  Example i belongs to group i mod (N / G), G = the largest divisor of N that is at most
  group_size; for each group and each of num_channels slices of the channels, the standard
  deviation over the group's G examples (sqrt(var + 1e-8)) averaged over the slice's features
  and the pixels."""
  n, height, width, channels = x.shape
  groups = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
  y = x.reshape(groups, n // groups, height, width, num_channels, channels // num_channels)
  y = jnp.sqrt(jnp.var(y, axis=0) + 1e-8)  # [n / G, H, W, F, c]
  y = jnp.mean(y, axis=(1, 2, 4))  # [n / G, F]
  y = jnp.tile(y, (groups, 1))[:, None, None, :]
  return jnp.concatenate([x, jnp.broadcast_to(y, (n, height, width, num_channels))], axis=-1)


class StyleGAN2Discriminator(nn.Module):
  """D(x [B, R, R, channels], labels [B] or None) -> logits [B]. update_stats is accepted for the
  GAN family's interface (this network has no batch statistics or spectral norm).
  differentiated_twice: the call is differentiated to second order (R1), which changes how its
  convolutions are computed on CPU, not their values (`_correlate`); the parameters are the
  same, so one D can be cloned with it for the R1 term only."""

  resolution: int
  num_classes: int = 0
  channel_base: int = 32768
  channel_max: int = 512
  architecture: str = "resnet"  # "resnet" or "orig"
  mbstd_group_size: int = 4
  mbstd_channels: int = 1
  mapping_layers: int = 8  # of the label mapping (conditional only)
  conv_clamp: float = 0.0
  differentiated_twice: bool = False

  @nn.compact
  def __call__(
    self, x: jax.Array, labels: jax.Array | None = None, update_stats: bool = False
  ) -> jax.Array:
    del update_stats
    if self.architecture not in ("resnet", "orig"):
      raise ValueError(
        f"Unknown discriminator architecture {self.architecture!r}; use resnet or orig."
      )
    clamp, half, twice = self.conv_clamp, math.sqrt(0.5), self.differentiated_twice
    if self.resolution < 8:
      raise ValueError(
        f"The StyleGAN2 discriminator needs a resolution >= 8, got {self.resolution}."
      )
    channels = lambda res: channels_at(res, self.channel_base, self.channel_max)
    h = None
    for res in reversed(block_resolutions(self.resolution)[1:]):
      tmp, out = channels(res), channels(res // 2)
      if h is None:
        h = Conv(tmp, 1, "lrelu", conv_clamp=clamp, name=f"b{res}_fromrgb")(x)
      shortcut = None
      if self.architecture == "resnet":
        shortcut = Conv(out, 1, down=True, use_bias=False, name=f"b{res}_skip")(h, gain=half)
      h = Conv(tmp, 3, "lrelu", conv_clamp=clamp, differentiated_twice=twice, name=f"b{res}_conv0")(
        h
      )
      gain = half if shortcut is not None else 1.0
      h = Conv(
        out,
        3,
        "lrelu",
        down=True,
        conv_clamp=clamp,
        differentiated_twice=twice,
        name=f"b{res}_conv1",
      )(h, gain=gain)
      if shortcut is not None:
        h = shortcut + h
    base = channels(4)
    if self.mbstd_channels:
      h = minibatch_std(h, self.mbstd_group_size, self.mbstd_channels)
    h = Conv(base, 3, "lrelu", conv_clamp=clamp, differentiated_twice=twice, name="b4_conv")(h)
    h = Dense(base, "lrelu", name="b4_fc")(h.reshape(h.shape[0], -1))
    if not self.num_classes:
      return Dense(1, name="b4_out")(h)[:, 0]
    out = Dense(base, name="b4_out")(h)
    cmap = MappingNetwork(
      base, self.mapping_layers, self.num_classes, track_w_avg=False, name="mapping"
    )(None, labels)
    return jnp.sum(out * cmap, axis=-1) / math.sqrt(base)
