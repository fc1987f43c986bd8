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


# Keys of the DCGAN/ResNet/MLP networks and of BigGAN-style sampling that StyleGAN2 replaces;
# `add_stylegan2_defaults` removes them, so setting one is an error that names the valid keys.
_NOT_STYLEGAN2 = (
  "g_features", "d_features", "d_downsample", "g_norm", "d_norm", "d_pooling", "leaky_slope",
)


def add_stylegan2_defaults(config: ml_collections.ConfigDict) -> None:
  """The GAN keys plus StyleGAN2's (genjax.families.stylegan2), with the official defaults of
  StyleGAN2-ADA (train.py's "paper256" spec where they differ by dataset)."""
  add_defaults(config)
  model = config.model
  for key in _NOT_STYLEGAN2:
    del model[key]
  del config.sampling["truncation"]
  del config.sampling["standing_stats_samples"]
  model.network = "stylegan2"
  model.latent_dim = 512  # z
  model.w_dim = 512
  model.channel_base = 16384  # C(res) = min(channel_base / res, channel_max)
  model.channel_max = 512
  model.mapping_layers = 8
  model.mapping_lr = 0.01  # learning-rate multiplier of the mapping network
  model.affine_lr = 1.0  # learning-rate multiplier of the style affines A(w) (official: 1)
  model.w_avg_beta = 0.995  # decay of the moving average of w (truncation's centre)
  model.conv_clamp = 0.0  # clamp convolution outputs to +-this (0 disables; official: 256)
  model.d_architecture = "resnet"  # "resnet" or "orig"
  model.mbstd_group_size = 4
  model.mbstd_channels = 1  # std channels: one per slice of D's features (official: 1)
  model.d_mapping_layers = 8  # the label mapping of a conditional discriminator
  model.style_mixing = 0.9  # probability of style mixing regularisation (0 disables)
  model.r1_gamma = 1.0
  model.r1_interval = 16  # lazy R1: every this many steps (1: in every D update)
  model.pl_weight = 2.0  # path length regularisation weight (0 disables)
  model.pl_interval = 4  # lazy path length regularisation: every this many steps (1: every G update)
  model.pl_batch_shrink = 2  # the path length batch is training.batch_size / this
  model.pl_decay = 0.01  # of the path lengths' running mean
  model.ema_kimg = 20.0  # generator EMA half-life in thousands of images
  model.ema_rampup = 0.0  # > 0: half-life min(ema_kimg * 1000, images seen * ema_rampup)

  config.optim.lr = 0.0025
  config.optim.d_lr = 0.0025
  config.optim.b1 = 0.0
  config.optim.b2 = 0.99
  config.sampling.truncation_psi = 1.0  # ws <- w_avg + psi (ws - w_avg) when sampling
  config.sampling.noise_mode = "const"  # "const" (fixed per-pixel noise), "random" or "none"
  config.sampling.mixing_crossover = 0  # style-mixing grid: first w entry of the column's latent

  # --mode=project: fit w's (and noise maps) to images (genjax.gan.projection).
  projection = config.projection = ml_collections.ConfigDict()
  projection.target = ""  # an image file or a folder of images to project
  projection.seed = 0
  projection.batch_size = 8  # targets projected at once (each on its own)
  projection.space = "w_plus"  # "w_plus" (one w per synthesis input) or "w" (one w for all)
  projection.num_steps = 1000
  projection.num_snapshots = 10  # images recorded along the way (divides num_steps)
  projection.w_samples = 10_000  # mapped latents for w_avg and w_std
  projection.lr = 0.1
  projection.lr_rampup = 0.05
  projection.lr_rampdown = 0.25
  projection.initial_noise_factor = 0.05  # exploration noise on w, times w_std, ramped down
  projection.noise_ramp = 0.75
  projection.noise_weight = 1e5  # of the noise maps' autocorrelation penalty
  projection.optimize_noise = True


def make_tiny(config: ml_collections.ConfigDict) -> None:
  """The `:tiny` variant of a StyleGAN2 paper config: narrow networks trained for 32 steps on
  generated 32x32 RGB images (data.name="synthetic_images"), to check on a CPU that it all runs."""
  config.data.name = "synthetic_images"
  config.data.image_size = 0
  config.data.in_memory = True
  config.data.num_threads = 2
  model, training = config.model, config.training
  model.latent_dim = model.w_dim = 16
  model.channel_base, model.channel_max = 128, 16
  model.mbstd_group_size = 4
  model.ema_kimg = 0.1
  training.batch_size = 8
  training.num_train_steps = 32
  training.log_every = training.checkpoint_every = 16
  training.sample_every = training.eval_every = 0
  config.eval.sample_metrics = ()
  config.eval.num_examples = 64
  config.eval.batch_size = 32
