"""The VAE family (Kingma & Welling 2014; IWAE evaluation of Burda et al. 2016).

Model: p(z) = N(0, I), q(z|x) = N(mean(x), diag(std(x)^2)), p(x|z) from genjax.vae.likelihoods.
All log-likelihoods are in nats, summed over the dimensions of one example.

Training loss: -ELBO_beta(x) = -E_q[log p(x|z)] + beta * KL(q(z|x) || p(z)), one reparameterized sample,
KL in closed form. Evaluation (nats, on the eval split):
  neg_elbo   -E_q[log p(x|z)] + KL (beta = 1), one sample
  nll_iwae   -log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q (k = eval.iwae_samples), evaluated in chunks
             of eval.iwae_chunk samples so memory stays bounded for k up to 5000.
Config keys: genjax.vae.settings.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genjax.distributions import gaussian_log_prob
from genjax.evaluation.likelihood import eval_data_statement
from genjax.families import FAMILIES
from genjax.families.base import Family
from genjax.models.vae import VAE_NETWORKS
from genjax.vae import settings
from genjax.vae.iwae import iwae_log_likelihood
from genjax.vae.likelihoods import LIKELIHOODS, gaussian_kl_to_standard


@FAMILIES.register("vae")
class VAEFamily(Family):
  """See the module docstring; config keys in genjax.vae.settings."""

  add_defaults = staticmethod(settings.add_defaults)

  def __init__(self, config, info, mesh):
    super().__init__(config, info, mesh)
    model = config.model
    self.likelihood = LIKELIHOODS.get(model.likelihood)
    self.network = VAE_NETWORKS.get(model.network)(
      model, self.example_shape, self.likelihood.params_per_channel
    )
    low, high = config.data.value_range
    if model.likelihood != "gaussian" and (low, high) != (0.0, 1.0):
      raise ValueError(f"The {model.likelihood} likelihood needs data.value_range=(0., 1.), got {(low, high)}.")
    if model.likelihood == "bernoulli" and info.is_image and config.data.binarize == "none":
      raise ValueError(
        "The bernoulli likelihood needs binary pixels: set data.binarize='dynamic' (or 'threshold'), "
        "or use model.likelihood='discretized_gaussian' for grey levels."
      )

  def init(self, rng, batch):
    z = jnp.zeros((batch["x"].shape[0], self.config.model.latent_dim))
    return self.network.init(rng, batch["x"], z)["params"], {}

  def _encode(self, params, x):
    return self.network.apply({"params": params}, x, method="encode")

  def _decode(self, params, z):
    return self.network.apply({"params": params}, z, method="decode")

  def _elbo_terms(self, params, x, rng):
    mean, log_std = self._encode(params, x)
    z = mean + jnp.exp(log_std) * jax.random.normal(rng, mean.shape, mean.dtype)
    log_px = self.likelihood.log_prob(self._decode(params, z), x)
    return log_px, gaussian_kl_to_standard(mean, log_std)

  def loss(self, params, model_state, batch, rng):
    log_px, kl = self._elbo_terms(params, batch["x"], rng)
    loss = jnp.mean(-log_px + self.config.model.beta * kl)
    return loss, ({"recon_nats": -log_px.mean(), "kl_nats": kl.mean(), "neg_elbo": jnp.mean(kl - log_px)},
                  model_state)

  def eval_metrics(self, params, model_state, batch, rng):
    x = batch["x"]
    elbo_rng, iwae_rng = jax.random.split(rng)
    log_px, kl = self._elbo_terms(params, x, elbo_rng)
    metrics = {"neg_elbo": kl - log_px, "recon_nats": -log_px, "kl_nats": kl}
    num_samples = self.config.eval.iwae_samples
    if num_samples:
      mean, log_std = self._encode(params, x)

      def log_joint(z):
        prior = jnp.sum(gaussian_log_prob(z, 0.0, 0.0), axis=-1)
        return self.likelihood.log_prob(self._decode(params, z), x) + prior

      chunk = min(self.config.eval.iwae_chunk, num_samples)
      metrics["nll_iwae"] = -iwae_log_likelihood(log_joint, mean, log_std, iwae_rng, num_samples, chunk)
    return metrics

  def sample(self, params, model_state, rng, num):
    z = jax.random.normal(rng, (num, self.config.model.latent_dim))
    return self.likelihood.mean(self._decode(params, z))

  def image_grids(self, params, model_state, batch, rng):
    """samples: prior samples; reconstructions: data and reconstruction in alternate columns;
    interpolations: rows walking linearly in latent space between the means of two data points."""
    count = self.config.sampling.grid_size
    columns = self.config.sampling.grid_columns
    x = batch["x"][: min(count // 2, batch["x"].shape[0])]
    mean, _ = self._encode(params, x)
    reconstruction = self.likelihood.mean(self._decode(params, mean))
    pairs = jnp.stack([x, reconstruction], axis=1).reshape(-1, *x.shape[1:])
    rows = max(min(count // columns, mean.shape[0] // 2), 1)
    start, end = mean[:rows], mean[rows : 2 * rows]
    weights = jnp.linspace(0.0, 1.0, columns)[None, :, None]
    path = start[:, None] * (1 - weights) + end[:, None] * weights  # [rows, columns, L]
    interpolations = self.likelihood.mean(self._decode(params, path.reshape(-1, path.shape[-1])))
    return {
      "samples": self.sample(params, model_state, rng, count),
      "reconstructions": pairs,
      "interpolations": interpolations,
    }

  def metric_conventions(self):
    per_example = (
      f"nats per example (summed over all dimensions, p(x|z) {self.config.model.likelihood}), on "
      f"the {eval_data_statement(self.config.data)}"
    )
    conventions = {
      "neg_elbo": "-ELBO = -E_q[log p(x|z)] + KL(q(z|x) || N(0, I)), one sample of z, KL in "
      f"closed form; {per_example}",
      "recon_nats": f"-E_q[log p(x|z)], one sample of z; {per_example}",
      "kl_nats": "KL(q(z|x) || N(0, I)) in closed form; nats per example",
    }
    if self.config.eval.iwae_samples:
      conventions["nll_iwae"] = (
        f"-log (1/k) sum_i p(x, z_i)/q(z_i|x), k={self.config.eval.iwae_samples} importance "
        f"samples (Burda et al. 2016; an upper bound on the NLL); {per_example}"
      )
    return conventions

  def parameter_groups(self, params):
    return {"encoder": params["encoder"], "decoder": params["decoder"]}

