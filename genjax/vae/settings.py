"""The config keys of the VAE family, added to `base_config()` by `add_defaults`.

model.*  network ("mlp", "conv" or "conv_spatial", genjax.models.vae), widths, latent size,
         activation, the likelihood p(x|z) ("bernoulli", "gaussian", "discretized_gaussian",
         genjax.vae.likelihoods) and the KL weight beta
eval.*   importance samples of the IWAE bound and how many are drawn at a time; the autoencoder
         metrics (reconstruction error, latent scale factor: genjax.vae.latent_scale)
The defaults are Burda et al. 2016's one-stochastic-layer MNIST model.
"""

from __future__ import annotations

import ml_collections


def add_defaults(config: ml_collections.ConfigDict) -> None:
  config.data.binarize = "dynamic"  # the bernoulli likelihood needs binary pixels
  model = config.model
  model.network = "mlp"  # "mlp", "conv" or "conv_spatial" (genjax.models.vae.VAE_NETWORKS)
  model.hidden = (200, 200)  # mlp: dense widths; conv: model.hidden[0] is the dense layer
  model.conv_channels = (32, 64)  # conv, conv_spatial: channels of the stride-2 stages
  model.latent_dim = 50  # mlp, conv: z [latent_dim]
  model.latent_channels = 4  # conv_spatial: z [H / 2^stages, W / 2^stages, latent_channels]
  model.norm_groups = 8  # conv_spatial: GroupNorm groups (divides every conv_channels width)
  model.activation = "tanh"  # tanh, relu, elu, gelu, swish
  model.likelihood = "bernoulli"  # bernoulli, gaussian, discretized_gaussian
  model.beta = 1.0  # KL weight of the training loss (1: the ELBO; beta-VAE otherwise)
  config.eval.iwae_samples = 5000  # k of the IWAE bound (0: no nll_iwae)
  config.eval.iwae_chunk = 500  # importance samples drawn at a time (memory O(batch * chunk))
  # recon_mse, recon_psnr (decode(posterior mean) vs x on [0, 1]) and latent_scale (1 / std of the
  # posterior means), for autoencoders whose latents another model learns (latent diffusion)
  config.eval.autoencoder_metrics = False
