"""Diffusion networks, chosen by `model.network`: (model section, num_classes) -> a flax module
(x [B, *shape], network time [B], labels; train) -> [B, *shape] (the UNet's and DiT's last axis:
model.out_channels when set, for inputs that carry conditioning channels). labels: [B] class labels
or None; for the UNet and DiT with model.context_dim > 0, text {tokens, mask, pooled}
(genjax.models.attention)."""

from __future__ import annotations

import ml_collections

from genjax.models.dit import DiT
from genjax.models.score_mlp import ScoreMLP
from genjax.models.unet import UNet
from genjax.registry import Registry

DIFFUSION_NETWORKS: Registry = Registry("diffusion network")


@DIFFUSION_NETWORKS.register("unet")
def unet(model: ml_collections.ConfigDict, num_classes: int) -> UNet:
  return UNet(
    channels=model.channels,
    channel_mult=tuple(model.channel_mult),
    num_res_blocks=model.num_res_blocks,
    attention_resolutions=tuple(model.attention_resolutions),
    dropout=model.dropout,
    embedding=model.embedding,
    fourier_scale=model.fourier_scale,
    num_classes=num_classes,
    resblock=model.resblock,
    skip_rescale=model.skip_rescale,
    groups=model.norm_groups,
    out_channels=model.get("out_channels", 0),  # configs saved before the key existed: 0
    context_dim=model.get("context_dim", 0),
    remat=model.get("remat", False),  # configs saved before the key existed: False
  )


@DIFFUSION_NETWORKS.register("dit")
def dit(model: ml_collections.ConfigDict, num_classes: int) -> DiT:
  return DiT(
    patch=model.patch,
    hidden_size=model.hidden_size,
    depth=model.depth,
    heads=model.heads,
    mlp_ratio=model.mlp_ratio,
    out_channels=model.out_channels,
    num_classes=num_classes,
    context_dim=model.context_dim,
    remat=model.get("remat", False),  # configs saved before the key existed: False
  )


@DIFFUSION_NETWORKS.register("score_mlp")
def score_mlp(model: ml_collections.ConfigDict, num_classes: int) -> ScoreMLP:
  return ScoreMLP(
    hidden=tuple(model.hidden), embedding_dim=model.embedding_dim, num_classes=num_classes
  )
