"""The config keys of the GAN family, added to `base_config()` by `add_defaults`, with DCGAN-like
defaults (genjax.families.gan documents the training scheme they control)."""

from __future__ import annotations

import ml_collections


def add_defaults(config: ml_collections.ConfigDict) -> None:
  config.data.value_range = (-1.0, 1.0)

  model = config.model
  model.network = "dcgan"  # "mlp", "dcgan" or "resnet" (genjax.models.gan.GAN_NETWORKS)
  model.latent_dim = 100
  model.g_features = (256, 128, 64)  # MLP widths or conv channels, smallest resolution first
  model.d_features = (64, 128, 256)
  model.d_downsample = (True, True, True)  # resnet only: which D blocks halve the resolution
  model.g_norm = "batch"  # dcgan: "batch" or "none" (resnet always uses batch norm in G)
  model.d_norm = "batch"  # dcgan: "batch", "layer" or "none" (never batch with a gradient penalty)
  model.d_pooling = "sum"  # resnet: global "sum" (SNGAN) or "mean" (WGAN-GP) pooling
  model.spectral_norm = False  # spectral normalization of every D layer
  model.leaky_slope = 0.2  # mlp/dcgan D activations
  model.conditional = False  # class-conditional G (conditional BN) and projection D
  model.loss = "non_saturating"  # minimax, non_saturating, least_squares, wasserstein, hinge
  model.n_critic = 1  # D updates per G update; training.batch_size must be a multiple of it
  model.gradient_penalty = 0.0  # WGAN-GP lambda (0 disables)
  model.r1_gamma = 0.0  # R1 gamma (0 disables)
  model.g_ortho_reg = 0.0  # BigGAN orthogonal regularization beta on G (0 disables)
  # Augmentation of every image D sees: "none", "diffaugment" or "ada" (genjax.families.gan)
  model.augment = "none"
  model.diffaugment = ""  # DiffAugment's policy, e.g. "color,cutout" ("": color,translation,cutout)
  model.ada_pipeline = "bgc"  # ADA: a pipeline of genjax.gan.ada.ADA_PIPELINES or a list of stages
  model.ada_target = 0.6  # ADA: the r_t = E[sign(D(real))] that p is steered to
  model.ada_interval = 4  # ADA: D updates between adjustments of p
  model.ada_kimg = 500.0  # ADA: thousands of real images over which p can move from 0 to 1

  config.optim.b1 = 0.5
  config.optim.b2 = 0.999
  config.optim.lr = 2e-4  # generator
  config.optim.d_lr = 2e-4  # discriminator
  config.training.max_d_loss = 0.0  # stop when a critic update's loss exceeds this (0 disables)
  config.sampling.truncation = 0.0  # sample z from N(0, I) truncated to [-t, t] (0 disables)
  # latents that estimate G's batch-norm statistics for sampling, rounded up to whole batches of
  # training.batch_size / model.n_critic (4 batches of 64 here: an estimate 4x less noisy than the
  # per-batch statistics G trained with, at a fraction of the cost of sampling 1000 images)
  config.sampling.standing_stats_samples = 256
