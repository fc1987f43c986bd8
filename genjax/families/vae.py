"""The VAE family (Kingma & Welling 2014; IWAE evaluation of Burda et al. 2016).

Model: p(z) = N(0, I), q(z|x) = N(mean(x), diag(std(x)^2)), p(x|z) one of
  bernoulli              x in {0, 1} (binarized images)              decoder: logits
  gaussian               x continuous (dequantized images, points)   decoder: mean, log-std
  discretized_gaussian   x on the 256 grey levels k/255              decoder: mean, log-std
All log-likelihoods are in nats, summed over the dimensions of one example.

Training loss: -ELBO_beta(x) = -E_q[log p(x|z)] + beta * KL(q(z|x) || p(z)), one reparameterized sample,
KL in closed form. Evaluation (nats, on the eval split):
  neg_elbo   -E_q[log p(x|z)] + KL (beta = 1), one sample
  nll_iwae   -log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q (k = eval.iwae_samples), evaluated in chunks
             of eval.iwae_chunk samples so memory stays bounded for k up to 5000.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from genjax.distributions import discretized_gaussian_log_prob, gaussian_log_prob
from genjax.families import FAMILIES
from genjax.families.base import Family
from genjax.models.vae import VAE_NETWORKS
from genjax.registry import Registry

LIKELIHOODS: Registry = Registry("VAE likelihood")


def _sum_per_example(values: jax.Array) -> jax.Array:
  return values.reshape(values.shape[0], -1).sum(axis=1)


@LIKELIHOODS.register("bernoulli")
class Bernoulli:
  params_per_channel = 1

  @staticmethod
  def log_prob(out: jax.Array, x: jax.Array) -> jax.Array:
    """out: logits [B, *shape]; x in [0, 1]. Returns [B]."""
    return -_sum_per_example(optax.sigmoid_binary_cross_entropy(out, x))

  @staticmethod
  def mean(out: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(out)


def _split_gaussian(out: jax.Array) -> tuple[jax.Array, jax.Array]:
  mean, log_std = jnp.split(out, 2, axis=-1)
  return mean, jnp.clip(log_std, -7.0, 5.0)


@LIKELIHOODS.register("gaussian")
class Gaussian:
  params_per_channel = 2

  @staticmethod
  def log_prob(out: jax.Array, x: jax.Array) -> jax.Array:
    return _sum_per_example(gaussian_log_prob(x, *_split_gaussian(out)))

  @staticmethod
  def mean(out: jax.Array) -> jax.Array:
    return _split_gaussian(out)[0]


@LIKELIHOODS.register("discretized_gaussian")
class DiscretizedGaussian:
  """P(x = k/255) = Phi((k + 1/2)/255) - Phi((k - 1/2)/255) under N(mean, std^2), with the edge bins
  k = 0 and k = 255 extended to -inf and +inf so the 256 probabilities sum to one (computed in log
  space by genjax.distributions.discretized_gaussian_log_prob)."""

  params_per_channel = 2

  @staticmethod
  def log_prob(out: jax.Array, x: jax.Array) -> jax.Array:
    """out: mean and log-std stacked on the channel axis [B, ..., 2C]; x [B, ..., C] on the levels
    k/255. Returns [B]."""
    mean, log_std = _split_gaussian(out)
    return _sum_per_example(discretized_gaussian_log_prob(x, mean, log_std, (0.0, 1.0)))

  @staticmethod
  def mean(out: jax.Array) -> jax.Array:
    return jnp.clip(_split_gaussian(out)[0], 0.0, 1.0)


def gaussian_kl_to_standard(mean: jax.Array, log_std: jax.Array) -> jax.Array:
  """KL(N(mean, std^2) || N(0, I)) summed over the last axis."""
  return jnp.sum(0.5 * (mean**2 + jnp.exp(2 * log_std) - 1.0) - log_std, axis=-1)


def iwae_log_likelihood(
  log_joint_fn, mean: jax.Array, log_std: jax.Array, rng: jax.Array, num_samples: int, chunk: int
) -> jax.Array:
  """log (1/k) sum_i p(x, z_i) / q(z_i | x) with z_i ~ q, for every example; [B].

  log_joint_fn(z [B, L]) -> log p(x, z) [B]. Samples are drawn `chunk` at a time inside a
  lax.scan that keeps a running logsumexp, so memory is O(B * chunk), not O(B * k).
  """
  if num_samples % chunk:
    raise ValueError(f"eval.iwae_samples={num_samples} must be a multiple of eval.iwae_chunk={chunk}.")

  def one_chunk(running, key):
    eps = jax.random.normal(key, (chunk, *mean.shape), mean.dtype)
    z = mean + jnp.exp(log_std) * eps  # [chunk, B, L]
    log_q = jnp.sum(gaussian_log_prob(z, mean, log_std), axis=-1)
    log_w = jax.vmap(log_joint_fn)(z) - log_q  # [chunk, B]
    return jnp.logaddexp(running, jax.nn.logsumexp(log_w, axis=0)), None

  keys = jax.random.split(rng, num_samples // chunk)
  total, _ = jax.lax.scan(one_chunk, jnp.full(mean.shape[:1], -jnp.inf, mean.dtype), keys)
  return total - math.log(num_samples)


@FAMILIES.register("vae")
class VAEFamily(Family):
  """Config: model.network ("mlp"/"conv"), model.hidden, model.conv_channels, model.latent_dim,
  model.activation, model.likelihood, model.beta; eval.iwae_samples, eval.iwae_chunk."""

  def __init__(self, config, info, example_shape):
    super().__init__(config, info, example_shape)
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

  def parameter_groups(self, params):
    return {"encoder": params["encoder"], "decoder": params["decoder"]}

