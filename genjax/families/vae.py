"""The VAE family (Kingma & Welling 2014; IWAE evaluation of Burda et al. 2016).

Model: p(z) = N(0, I), q(z|x) = N(mean(x), diag(std(x)^2)), p(x|z) from genjax.vae.likelihoods.
z [B, *latent_shape]: flat (latent_dim,) or spatial (h, w, latent_channels), as the network says
(genjax.models.vae). All log-likelihoods are in nats, summed over the dimensions of one example
(every latent dimension for the KL and the prior).

Training loss: -ELBO_beta(x) = -E_q[log p(x|z)] + beta * KL(q(z|x) || p(z)), one reparameterized sample,
KL in closed form. Evaluation (nats, on the eval split):
  neg_elbo   -E_q[log p(x|z)] + KL (beta = 1), one sample
  nll_iwae   -log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q (k = eval.iwae_samples), evaluated in chunks
             of eval.iwae_chunk samples so memory stays bounded for k up to 5000.
With eval.autoencoder_metrics (an autoencoder whose latents a second model learns):
  recon_mse    mean over pixels of (clip(mean of p(x|decode(posterior mean)), 0, 1) - x)^2, x on [0, 1]
  recon_psnr   -10 log10(recon_mse) of each image, in dB, averaged over the images
  latent_scale 1 / std of the posterior means of each eval batch (genjax.vae.latent_scale),
               averaged over the batches
Config keys: genjax.vae.settings.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genjax.distributions import gaussian_log_prob
from genjax.evaluation.likelihood import eval_data_statement
from genjax.families import FAMILIES
from genjax.families.base import Family
from genjax.images import to_unit_range
from genjax.models.vae import VAE_NETWORKS
from genjax.vae import settings
from genjax.vae.iwae import iwae_log_likelihood
from genjax.vae.latent_scale import latent_scale
from genjax.vae.likelihoods import LIKELIHOODS, gaussian_kl_to_standard

MIN_PSNR_MSE = 1e-10  # a perfect reconstruction counts as 100 dB


def _per_example(values: jax.Array) -> jax.Array:
  """[B, ...] -> [B, D]: one row of all dimensions per example."""
  return values.reshape(values.shape[0], -1)


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
    self.latent_shape = self.network.latent_shape  # one example's z
    low, high = config.data.value_range
    if model.likelihood != "gaussian" and (low, high) != (0.0, 1.0):
      raise ValueError(f"The {model.likelihood} likelihood needs data.value_range=(0., 1.), got {(low, high)}.")
    if model.likelihood == "bernoulli" and info.is_image and config.data.binarize == "none":
      raise ValueError(
        "The bernoulli likelihood needs binary pixels: set data.binarize='dynamic' (or 'threshold'), "
        "or use model.likelihood='discretized_gaussian' for grey levels."
      )

  def init(self, rng, batch):
    z = jnp.zeros((batch["x"].shape[0], *self.latent_shape))
    return self.network.init(rng, batch["x"], z)["params"], {}

  def _encode(self, params, x):
    """x [B, *example_shape] -> q(z|x)'s (mean, log_std), each [B, *latent_shape]."""
    return self.apply_network(self.network, {"params": params}, x, method="encode")

  def _decode(self, params, z):
    """z [B, *latent_shape] -> the parameters of p(x|z)."""
    return self.apply_network(self.network, {"params": params}, z, method="decode")

  def _elbo_terms(self, params, x, rng):
    mean, log_std = self._encode(params, x)
    z = mean + jnp.exp(log_std) * jax.random.normal(rng, mean.shape, mean.dtype)
    log_px = self.likelihood.log_prob(self._decode(params, z), x)
    return log_px, gaussian_kl_to_standard(_per_example(mean), _per_example(log_std))

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
    if num_samples or self.config.eval.autoencoder_metrics:
      mean, log_std = self._encode(params, x)
    if num_samples:

      def log_joint(z):  # z [B, D], the flattened latents
        prior = jnp.sum(gaussian_log_prob(z, 0.0, 0.0), axis=-1)
        decoded = self._decode(params, z.reshape(z.shape[0], *self.latent_shape))
        return self.likelihood.log_prob(decoded, x) + prior

      chunk = min(self.config.eval.iwae_chunk, num_samples)
      metrics["nll_iwae"] = -iwae_log_likelihood(
        log_joint, _per_example(mean), _per_example(log_std), iwae_rng, num_samples, chunk
      )
    if self.config.eval.autoencoder_metrics:
      metrics.update(self._autoencoder_metrics(params, x, mean, batch["mask"]))
    return metrics

  def _autoencoder_metrics(self, params, x, mean, mask):
    """recon_mse, recon_psnr [B] of decode(mean) against x, on [0, 1]; latent_scale [B]: this
    batch's 1 / std(mean) over its real rows (mask [B] is 0 on padding), the same in every row."""
    value_range = self.config.data.value_range
    reconstruction = jnp.clip(
      to_unit_range(self.likelihood.mean(self._decode(params, mean)), value_range), 0.0, 1.0
    )
    mse = jnp.mean(_per_example((reconstruction - to_unit_range(x, value_range)) ** 2), axis=1)
    scale = latent_scale(mean, mask.astype(mean.dtype))
    return {
      "recon_mse": mse,
      "recon_psnr": -10.0 * jnp.log10(jnp.maximum(mse, MIN_PSNR_MSE)),
      "latent_scale": jnp.full(mse.shape, scale),
    }

  def sample(self, params, model_state, rng, num):
    z = jax.random.normal(rng, (num, *self.latent_shape))
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
    weights = jnp.linspace(0.0, 1.0, columns).reshape(1, columns, *(1 for _ in self.latent_shape))
    path = start[:, None] * (1 - weights) + end[:, None] * weights  # [rows, columns, *latent_shape]
    interpolations = self.likelihood.mean(self._decode(params, path.reshape(-1, *self.latent_shape)))
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
    if self.config.eval.autoencoder_metrics:
      on = f"on the {eval_data_statement(self.config.data)}"
      conventions.update(
        recon_mse="mean over pixels and images of (x_hat - x)^2, x_hat = clip(mean of p(x|z), 0, 1) "
        f"at z = the posterior mean, x and x_hat mapped to [0, 1]; {on}",
        recon_psnr=f"-10 log10(per-image recon_mse) in dB, averaged over the images; {on}",
        latent_scale="latent diffusion's z scale factor 1 / std(z), std over all elements of the "
        f"posterior means {self.latent_shape} of one eval batch (eval.batch_size="
        f"{self.config.eval.batch_size}), averaged over the batches weighted by their images; {on}",
      )
    return conventions

  def parameter_groups(self, params):
    return {"encoder": params["encoder"], "decoder": params["decoder"]}

