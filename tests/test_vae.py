"""VAE math: likelihoods, KL, and the importance-weighted bound on a model with a known marginal."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from genjax.distributions import gaussian_log_prob
from genjax.vae.iwae import iwae_log_likelihood
from genjax.vae.likelihoods import Bernoulli, DiscretizedGaussian, gaussian_kl_to_standard


def test_bernoulli_log_prob_is_the_binary_log_likelihood():
  logits = jnp.array([[0.3, -1.2, 2.0]])
  x = jnp.array([[1.0, 0.0, 1.0]])
  p = jax.nn.sigmoid(logits)
  expected = jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log(1 - p))
  np.testing.assert_allclose(Bernoulli.log_prob(logits, x), [expected], rtol=1e-6)


@pytest.mark.parametrize("mean,log_std", [(0.5, -2.0), (0.02, -4.0), (0.97, -1.0), (1.3, 0.5)])
def test_discretized_gaussian_is_a_distribution_over_the_256_levels(mean, log_std):
  levels = jnp.arange(256, dtype=jnp.float32)[:, None] / 255.0  # [256, 1] as a batch of 1-pixel images
  out = jnp.broadcast_to(jnp.array([mean, log_std], jnp.float32), (256, 2))
  probabilities = np.asarray(jnp.exp(DiscretizedGaussian.log_prob(out, levels)))
  np.testing.assert_allclose(probabilities.sum(), 1.0, atol=2e-4)
  edges = (np.arange(257) - 0.5) / 255.0
  edges[0], edges[-1] = -np.inf, np.inf  # the edge bins take the tails
  expected = np.diff(scipy.stats.norm.cdf(edges, loc=mean, scale=np.exp(log_std)))
  np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_kl_to_standard_normal_matches_monte_carlo():
  mean, log_std = jnp.array([0.7, -1.5]), jnp.array([-0.3, 0.4])
  z = mean + jnp.exp(log_std) * jax.random.normal(jax.random.key(0), (200_000, 2))
  log_q = gaussian_log_prob(z, mean, log_std).sum(axis=-1)
  log_p = gaussian_log_prob(z, 0.0, 0.0).sum(axis=-1)
  np.testing.assert_allclose(gaussian_kl_to_standard(mean, log_std), jnp.mean(log_q - log_p), atol=0.01)


def _linear_gaussian(x, noise_std):
  """z ~ N(0, 1), x | z ~ N(z, s^2): log p(x, z) and the exact log p(x) = log N(x; 0, 1 + s^2)."""

  def log_joint(z):  # z [B, 1] -> [B]
    return gaussian_log_prob(z, 0.0, 0.0)[:, 0] + gaussian_log_prob(x, z[:, 0], math.log(noise_std))

  variance = 1 + noise_std**2
  exact = -0.5 * (x**2 / variance + math.log(2 * math.pi * variance))
  return log_joint, exact


def test_iwae_is_exact_with_the_true_posterior_and_tightens_with_k():
  x, noise_std = jnp.array([-1.0, 0.3, 2.5]), 0.5
  log_joint, exact = _linear_gaussian(x, noise_std)
  variance = noise_std**2 / (1 + noise_std**2)
  post_mean, post_log_std = (x / (1 + noise_std**2))[:, None], jnp.full((3, 1), 0.5 * math.log(variance))
  rng = jax.random.key(1)
  tight = iwae_log_likelihood(log_joint, post_mean, post_log_std, rng, 10, 5)
  np.testing.assert_allclose(tight, exact, atol=1e-5)  # every importance weight equals p(x)

  # An imperfect proposal: the ELBO (k=1, averaged) is clearly below log p(x); k=5000 in chunks of
  # 500 closes the gap.
  mean, log_std = post_mean + 0.15, post_log_std + 0.2
  repeats = 2000
  repeated_joint, _ = _linear_gaussian(jnp.repeat(x, repeats), noise_std)
  single_samples = iwae_log_likelihood(repeated_joint, jnp.repeat(mean, repeats, axis=0),
                                       jnp.repeat(log_std, repeats, axis=0), rng, 1, 1)
  elbo = single_samples.reshape(3, repeats).mean(axis=1)
  iwae = iwae_log_likelihood(log_joint, mean, log_std, rng, 5000, 500)
  assert np.all(np.asarray(exact) - np.asarray(elbo) > 0.05)
  np.testing.assert_allclose(iwae, exact, atol=0.01)
  with pytest.raises(ValueError, match="multiple"):
    iwae_log_likelihood(log_joint, mean, log_std, rng, 400, 300)



def test_the_family_states_units_and_data_of_its_likelihoods(load):
  from genjax import parallel
  from genjax.datasets import dataset_info
  from genjax.families import get_family

  config = load("vae_mnist.py:tiny")
  family = get_family("vae")(config, dataset_info(config.data), parallel.make_mesh())
  conventions = family.metric_conventions()
  assert set(conventions) == {"neg_elbo", "recon_nats", "kl_nats", "nll_iwae"}
  assert "k=100 importance samples" in conventions["nll_iwae"]
  assert "nats per example" in conventions["neg_elbo"] and "binarized" in conventions["neg_elbo"]
