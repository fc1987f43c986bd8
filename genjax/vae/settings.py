"""The config keys of the VAE family, added to `base_config()` by `add_defaults`.

model.*  network ("mlp" or "conv", genjax.models.vae), widths, latent size, activation, the
         likelihood p(x|z) ("bernoulli", "gaussian", "discretized_gaussian", genjax.vae.likelihoods)
         and the KL weight beta
eval.*   importance samples of the IWAE bound and how many are drawn at a time
The defaults are Burda et al. 2016's one-stochastic-layer MNIST model.
"""

from __future__ import annotations

import ml_collections


def add_defaults(config: ml_collections.ConfigDict) -> None:
  config.data.binarize = "dynamic"  # the bernoulli likelihood needs binary pixels
  model = config.model
  model.network = "mlp"  # "mlp" or "conv" (genjax.models.vae.VAE_NETWORKS)
  model.hidden = (200, 200)  # mlp: dense widths; conv: model.hidden[0] is the dense layer
  model.conv_channels = (32, 64)  # conv: channels of the stride-2 convolutions
  model.latent_dim = 50
  model.activation = "tanh"  # tanh, relu, elu, gelu, swish
  model.likelihood = "bernoulli"  # bernoulli, gaussian, discretized_gaussian
  model.beta = 1.0  # KL weight of the training loss (1: the ELBO; beta-VAE otherwise)
  config.eval.iwae_samples = 5000  # k of the IWAE bound (0: no nll_iwae)
  config.eval.iwae_chunk = 500  # importance samples drawn at a time (memory O(batch * chunk))
