"""Likelihood metrics: their conventions (written into every protocol) and unit conversions.

Families report likelihood metrics per example through their `eval_metrics` hook; the runner
averages them over the eval split. What a number means depends on conventions that papers often
leave implicit (nats or bits, per example or per dimension, which discretization of the data, how
many importance samples), so each known metric name has its convention here, completed from the
config.

bits/dim of a negative log-likelihood L (nats per example) over D dimensions: L / (D ln 2). For
8-bit images modelled as continuous densities on [0, 1]^D (dequantized x = (k + u) / 256), the
discrete NLL in bits/dim is L / (D ln 2) + 8 (the change of variables from [0, 256) to [0, 1)).
"""

from __future__ import annotations

import math

import ml_collections


def nats_to_bits_per_dim(nats: float, num_dims: int) -> float:
  """A per-example negative log-likelihood in nats -> bits per dimension: nats / (D ln 2)."""
  return nats / (num_dims * math.log(2.0))


def _data_statement(config: ml_collections.ConfigDict) -> str:
  data = config.data
  if data.binarize != "none":
    how = (
      "binarized once with eval.seed (dynamic: x ~ Bernoulli(pixel))"
      if data.binarize == "dynamic"
      else "thresholded at 0.5"
    )
    return f"{data.name} {data.eval_split} split, pixels {how}"
  if data.dequantize:
    return f"{data.name} {data.eval_split} split, uniformly dequantized (x + u) / 256"
  return f"{data.name} {data.eval_split} split, grey levels k/255 in {tuple(data.value_range)}"


def likelihood_conventions(config: ml_collections.ConfigDict) -> dict[str, str]:
  """metric name -> its convention, for the likelihood metrics the config's family reports."""
  data = _data_statement(config)
  conventions: dict[str, str] = {}
  if config.family == "vae":
    likelihood = config.model.get("likelihood", "")
    per_example = (
      f"nats per example (summed over all dimensions, p(x|z) {likelihood}), on the {data}"
    )
    conventions["neg_elbo"] = (
      "-ELBO = -E_q[log p(x|z)] + KL(q(z|x) || N(0, I)), one sample of z, KL in "
      f"closed form; {per_example}"
    )
    conventions["recon_nats"] = f"-E_q[log p(x|z)], one sample of z; {per_example}"
    conventions["kl_nats"] = "KL(q(z|x) || N(0, I)) in closed form; nats per example"
    iwae = config.eval.get("iwae_samples", 0)
    if iwae:
      conventions["nll_iwae"] = (
        f"-log (1/k) sum_i p(x, z_i)/q(z_i|x), k={iwae} importance samples "
        f"(Burda et al. 2016; an upper bound on the NLL); {per_example}"
      )
  if config.family == "diffusion":
    conventions.update(_diffusion_conventions(config))
  return conventions


def _diffusion_conventions(config: ml_collections.ConfigDict) -> dict[str, str]:
  """The diffusion family's likelihoods (genjax.families.diffusion documents their computation)."""
  ev, data = config.eval, config.data
  size = f"{data.image_size}x{data.image_size} (padding counted)" if data.image_size else "native"
  per_dim = f"bits per dimension of the preprocessed example ({size} size)"
  choice = ev.get("likelihood", "none")
  if choice == "vlb":
    terms = ev.get("vlb_timesteps", 0)
    estimate = f"a {terms}-term Monte Carlo estimate" if terms else "all terms summed"
    bound = (
      f"DDPM variational bound (Ho et al. 2020), {estimate}; data on the 256 levels of "
      f"{tuple(data.value_range)} with a discretized Gaussian decoder; {per_dim}"
    )
    return {
      "bpd_vlb": bound,
      "bpd_vlb_prior": f"the prior term KL(q(x_T|x_0) || p(x_T)); {per_dim}",
      "bpd_vlb_decoder": f"the decoder term -log p(x_0|x_1); {per_dim}",
    }
  if choice == "ode":
    solver = f"solver {ev.get('ode_solver', '')}, trace estimator {ev.get('trace_estimator', '')}"
    return {
      "bpd_ode": (
        "probability-flow ODE likelihood (Song et al. 2021) of uniformly dequantized "
        f"8-bit images, -log2 p / D + 8 - log2(range width) (score_sde convention), {solver}; "
        f"{per_dim}"
      ),
      "nll_ode": f"-log p(x) of points from the probability-flow ODE, {solver}; nats per example",
    }
  return {}
