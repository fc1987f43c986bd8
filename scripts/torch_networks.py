"""PyTorch twins of genjax networks, for scripts/torch_reference.py (benchmark.py --torch) and
tests/test_torch_reference.py.

Each module has the same layers, parameter shapes (hence parameter count) and initialization as
its flax original, in PyTorch's NCHW layout:
  DCGANGenerator      genjax.models.gan.DCGANGenerator      z [B, latent] -> [B, C, H, W] in [-1, 1]
  DCGANDiscriminator  genjax.models.gan.DCGANDiscriminator  [B, C, H, W] -> logits [B]
  UNet                genjax.models.unet.UNet (DDPM blocks) ([B, C, H, W], time [B]) -> [B, C, H, W]
`build_networks(config, example_shape)` returns them per genjax parameter group. This module
imports torch, which is not a genjax dependency (`pip install torch`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import ml_collections
import torch
import torch.nn.functional as F
from torch import nn

DCGAN_INIT_STD = 0.02


def parameter_count(module: nn.Module) -> int:
  return sum(parameter.numel() for parameter in module.parameters())


# --- DCGAN ----------------------------------------------------------------------------------------


def _batch_norm(channels: int) -> nn.BatchNorm2d:
  """Batch norm with the batch's statistics only, as genjax (which keeps no running averages)."""
  return nn.BatchNorm2d(channels, eps=1e-5, track_running_stats=False)


def _dcgan_init(module: nn.Module) -> None:
  """N(0, 0.02) weights and zero biases of every convolution and dense layer (genjax DCGAN_INIT)."""
  for layer in module.modules():
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
      nn.init.normal_(layer.weight, 0.0, DCGAN_INIT_STD)
      if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class DCGANGenerator(nn.Module):
  """Dense to [features[0], H / 2^L, W / 2^L], then L = len(features) transposed 4x4 stride-2
  convolutions (PyTorch ConvTranspose2d(4, 2, 1), as genjax's TransposedConv4x4) through
  features[1:] and the image channels; batch norm + ReLU after all but the last, tanh output.
  Layers followed by batch norm have no bias."""

  def __init__(self, latent_dim: int, features: Sequence[int], out_shape: Sequence[int],
               batch_norm: bool = True):
    super().__init__()
    height, width, channels = out_shape
    scale = 2 ** len(features)
    self.base_shape = (features[0], height // scale, width // scale)
    self.project = nn.Linear(latent_dim, math.prod(self.base_shape), bias=not batch_norm)
    norm = _batch_norm if batch_norm else lambda _: nn.Identity()
    layers: list[nn.Module] = [norm(features[0]), nn.ReLU()]
    for c_in, c_out in itertools.pairwise(features):
      layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=not batch_norm), norm(c_out),
                 nn.ReLU()]
    layers += [nn.ConvTranspose2d(features[-1], channels, 4, 2, 1), nn.Tanh()]
    self.body = nn.Sequential(*layers)
    _dcgan_init(self)

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    return self.body(self.project(z).view(z.shape[0], *self.base_shape))


class DCGANDiscriminator(nn.Module):
  """len(features) 4x4 stride-2 convolutions (padding 1 = flax 'SAME' on even sizes), each
  followed by leaky ReLU; all but the first normalized by `norm` ("batch", "layer" = per-example
  over C, H, W with per-channel gain and bias, or "none"; normalized ones have no bias), then a
  dense logit on the flattened features."""

  def __init__(self, features: Sequence[int], in_shape: Sequence[int], norm: str = "batch",
               leaky_slope: float = 0.2):
    super().__init__()
    height, width, channels = in_shape
    layers: list[nn.Module] = []
    for index, c_out in enumerate(features):
      normalized = index > 0 and norm != "none"
      layers.append(nn.Conv2d(channels, c_out, 4, 2, 1, bias=not normalized))
      if normalized:
        layers.append(_batch_norm(c_out) if norm == "batch" else nn.GroupNorm(1, c_out, eps=1e-6))
      layers.append(nn.LeakyReLU(leaky_slope))
      channels = c_out
    scale = 2 ** len(features)
    flat = channels * (height // scale) * (width // scale)
    self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(flat, 1))
    _dcgan_init(self)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.body(x)[:, 0]


# --- DDPM UNet ------------------------------------------------------------------------------------


def positional_embedding(values: torch.Tensor, dim: int,
                         max_period: float = 10_000.0) -> torch.Tensor:
  """[B] -> [B, dim]: sin(v w_k), cos(v w_k), w_k = max_period^(-k / (dim/2 - 1)) (genjax/DDPM)."""
  half = dim // 2
  frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device) /
                          (half - 1))
  angles = values[:, None].float() * frequencies[None]
  return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def _group_norm(groups: int, channels: int) -> nn.GroupNorm:
  return nn.GroupNorm(groups, channels, eps=1e-6)


def _xavier(layer: nn.Module, zero: bool = False) -> nn.Module:
  """genjax's default_init (variance_scaling(1, fan_avg, uniform) = Xavier uniform) or zeros for
  the weight; zero bias."""
  if zero:
    nn.init.zeros_(layer.weight)
  else:
    nn.init.xavier_uniform_(layer.weight)
  nn.init.zeros_(layer.bias)
  return layer


class ResBlock(nn.Module):
  """GN, swish, conv3x3, + Dense(swish(emb)), GN, swish, dropout, conv3x3 (zero init), plus a
  1x1-conv shortcut when the channels change."""

  def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float,
               groups: int):
    super().__init__()
    self.norm_in = _group_norm(groups, in_channels)
    self.conv_in = _xavier(nn.Conv2d(in_channels, out_channels, 3, padding=1))
    self.embedding = _xavier(nn.Linear(emb_dim, out_channels))
    self.norm_out = _group_norm(groups, out_channels)
    self.dropout = nn.Dropout(dropout)
    self.conv_out = _xavier(nn.Conv2d(out_channels, out_channels, 3, padding=1), zero=True)
    self.shortcut = (_xavier(nn.Conv2d(in_channels, out_channels, 1))
                     if in_channels != out_channels else nn.Identity())

  def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    h = self.conv_in(F.silu(self.norm_in(x)))
    h = h + self.embedding(F.silu(emb))[:, :, None, None]
    h = self.conv_out(self.dropout(F.silu(self.norm_out(h))))
    return self.shortcut(x) + h


class AttentionBlock(nn.Module):
  """Single-head self-attention over the H * W positions: GN, 1x1 (dense) q, k, v,
  softmax(q k^T / sqrt(C)) v, zero-initialized output projection, residual."""

  def __init__(self, channels: int, groups: int):
    super().__init__()
    self.norm = _group_norm(groups, channels)
    self.q, self.k, self.v = (_xavier(nn.Linear(channels, channels)) for _ in range(3))
    self.proj_out = _xavier(nn.Linear(channels, channels), zero=True)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = x.shape
    h = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
    h = F.scaled_dot_product_attention(self.q(h), self.k(h), self.v(h))  # scale 1 / sqrt(C)
    h = self.proj_out(h).transpose(1, 2).reshape(batch, channels, height, width)
    return x + h


class ResidualStage(nn.Module):
  """A ResBlock, followed by self-attention when the stage runs at an attention resolution."""

  def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float,
               groups: int, attention: bool):
    super().__init__()
    self.block = ResBlock(in_channels, out_channels, emb_dim, dropout, groups)
    self.attention = AttentionBlock(out_channels, groups) if attention else nn.Identity()

  def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    return self.attention(self.block(x, emb))


class Downsample(nn.Module):
  """3x3 stride-2 convolution with flax's 'SAME' padding on even sizes (0 before, 1 after)."""

  def __init__(self, channels: int):
    super().__init__()
    self.conv = _xavier(nn.Conv2d(channels, channels, 3, stride=2))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
  """Nearest 2x up-sampling, then a 3x3 convolution."""

  def __init__(self, channels: int):
    super().__init__()
    self.conv = _xavier(nn.Conv2d(channels, channels, 3, padding=1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
  """genjax's DDPM UNet (resblock='ddpm', positional time embedding, unconditional): conv_in;
  per level num_res_blocks stages, then a strided down-sampling conv (not after the last level);
  middle ResBlock, attention, ResBlock; per level from the deepest num_res_blocks + 1 stages fed
  concatenated skips, then up-sampling (not after level 0); GN, swish, conv3x3 out (zero init).
  Time embedding: positional(channels), Dense(4C), swish, Dense(4C)."""

  def __init__(self, image_shape: Sequence[int], channels: int, channel_mult: Sequence[int],
               num_res_blocks: int, attention_resolutions: Sequence[int], dropout: float,
               groups: int):
    super().__init__()
    size, _, image_channels = image_shape
    emb_dim = 4 * channels
    self.channels = channels
    self.embed = nn.Sequential(_xavier(nn.Linear(channels, emb_dim)), nn.SiLU(),
                               _xavier(nn.Linear(emb_dim, emb_dim)))
    self.conv_in = _xavier(nn.Conv2d(image_channels, channels, 3, padding=1))

    def stage(c_in: int, c_out: int) -> ResidualStage:
      return ResidualStage(c_in, c_out, emb_dim, dropout, groups, size in attention_resolutions)

    self.down = nn.ModuleList()
    skip_channels, current = [channels], channels
    for level, mult in enumerate(channel_mult):
      for _ in range(num_res_blocks):
        self.down.append(stage(current, channels * mult))
        current = channels * mult
        skip_channels.append(current)
      if level != len(channel_mult) - 1:
        self.down.append(Downsample(current))
        skip_channels.append(current)
        size //= 2
    self.middle = nn.ModuleList([
      ResBlock(current, current, emb_dim, dropout, groups), AttentionBlock(current, groups),
      ResBlock(current, current, emb_dim, dropout, groups)])
    self.up = nn.ModuleList()
    for level in reversed(range(len(channel_mult))):
      for _ in range(num_res_blocks + 1):
        self.up.append(stage(current + skip_channels.pop(), channels * channel_mult[level]))
        current = channels * channel_mult[level]
      if level != 0:
        self.up.append(Upsample(current))
        size *= 2
    self.norm_out = _group_norm(groups, current)
    self.conv_out = _xavier(nn.Conv2d(current, image_channels, 3, padding=1), zero=True)

  def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
    emb = self.embed(positional_embedding(time, self.channels))
    h = self.conv_in(x)
    skips = [h]
    for layer in self.down:
      h = layer(h, emb) if isinstance(layer, ResidualStage) else layer(h)
      skips.append(h)
    first, attention, second = self.middle
    h = second(attention(first(h, emb)), emb)
    for layer in self.up:
      if isinstance(layer, ResidualStage):
        h = layer(torch.cat([h, skips.pop()], dim=1), emb)
      else:
        h = layer(h)
    return self.conv_out(F.silu(self.norm_out(h)))


# --- from a genjax config -------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(f"The PyTorch reference does not implement {message}.")


def build_networks(config: ml_collections.ConfigDict,
                   example_shape: Sequence[int]) -> dict[str, nn.Module]:
  """The config's networks keyed like genjax's Family.parameter_groups: {"generator",
  "discriminator"} for the GAN family (model.network='dcgan'), {"model"} for the diffusion family
  (model.network="unet"). example_shape is genjax's [H, W, C]. Unsupported options raise."""
  model = config.model
  if config.family == "gan":
    _require(model.network == "dcgan", f"model.network={model.network!r} (only 'dcgan')")
    _require(not model.conditional, "model.conditional=True")
    _require(not model.spectral_norm, "model.spectral_norm=True")
    return {
      "generator": DCGANGenerator(model.latent_dim, tuple(model.g_features), example_shape,
                                  batch_norm=model.g_norm == "batch"),
      "discriminator": DCGANDiscriminator(tuple(model.d_features), example_shape, model.d_norm,
                                          model.leaky_slope),
    }
  if config.family == "diffusion":
    _require(model.network == "unet", f"model.network={model.network!r} (only 'unet')")
    _require(model.resblock == "ddpm", f"model.resblock={model.resblock!r} (only 'ddpm')")
    _require(model.embedding == "positional", f"model.embedding={model.embedding!r}")
    _require(not model.skip_rescale, "model.skip_rescale=True")
    _require(model.num_classes == 0, "class-conditional UNets (model.num_classes > 0)")
    return {"model": UNet(example_shape, model.channels, tuple(model.channel_mult),
                          model.num_res_blocks, tuple(model.attention_resolutions),
                          model.dropout, model.norm_groups)}
  raise ValueError(f"The PyTorch reference has no networks for family {config.family!r}.")
