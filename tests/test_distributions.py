"""The shared Gaussian log-likelihoods (genjax.distributions) against float64 references: the
discretized Gaussian is a distribution over the levels of any value range, keeps its value and
gradient many stds into the tails, and is the same function for the VAE ([0, 1]) and the diffusion
decoder ([-1, 1])."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

from genjax.distributions import discretized_gaussian_log_prob, gaussian_log_prob
from genjax.vae.likelihoods import DiscretizedGaussian

RANGES = [(0.0, 1.0), (-1.0, 1.0)]


def reference_log_prob(x, mean, std, value_range, levels=256):
  """log P(x) in float64, for scalars, independently of the CDF differences under test: the edge
  bins from scipy's log_ndtr, an interior bin [a, b] (in std units) by quadrature,
    log P = log phi(m) + log int_a^b exp((m^2 - t^2) / 2) dt,
  with m the point of [a, b] nearest 0, so that the integrand lies in (0, 1] even 100 stds out."""
  low, high = value_range
  half_bin = 0.5 * (high - low) / (levels - 1)
  a, b = (x - half_bin - mean) / std, (x + half_bin - mean) / std
  level = round((x - low) / (2 * half_bin))
  if level == 0:
    return scipy.special.log_ndtr(b)
  if level == levels - 1:
    return scipy.special.log_ndtr(-a)
  m = min(max(0.0, a), b)
  integral, _ = scipy.integrate.quad(lambda t: math.exp(0.5 * (m * m - t * t)), a, b, epsabs=0,
                                     epsrel=1e-13)
  return scipy.stats.norm.logpdf(m) + math.log(integral)


def test_gaussian_log_prob_is_the_normal_log_density_and_broadcasts():
  x = np.linspace(-6.0, 6.0, 13, dtype=np.float32)[:, None]  # [13, 1]
  mean, log_std = np.array([0.0, 1.5, -2.0], np.float32), np.array([0.0, -1.0, 0.7], np.float32)
  expected = scipy.stats.norm.logpdf(x, mean, np.exp(log_std))
  np.testing.assert_allclose(gaussian_log_prob(x, mean, log_std), expected, rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(gaussian_log_prob(x, 0.0, 0.0), scipy.stats.norm.logpdf(x), rtol=1e-6)


@pytest.mark.parametrize("value_range,levels", [*((r, 256) for r in RANGES), ((0.0, 255.0), 256),
                                                ((-3.0, 5.0), 32)])
@pytest.mark.parametrize("mean_fraction,log_std", [(0.5, -2.0), (0.02, -5.0), (0.97, -1.0),
                                                   (1.3, 0.5), (-0.4, -3.0), (0.3, 2.0)])
def test_the_levels_are_a_distribution_matching_the_float64_bin_masses(value_range, levels,
                                                                       mean_fraction, log_std):
  """mean and std are given in units of the range's width, so every case sees the same shapes."""
  low, high = value_range
  width = high - low
  mean, std = low + mean_fraction * width, math.exp(log_std) * width
  x = low + width * np.arange(levels) / (levels - 1)
  log_p = discretized_gaussian_log_prob(jnp.asarray(x, jnp.float32), mean, math.log(std),
                                        value_range, levels)
  probabilities = np.exp(np.asarray(log_p, np.float64))
  np.testing.assert_allclose(probabilities.sum(), 1.0, atol=1e-5)
  edges = low + width * (np.arange(levels + 1) - 0.5) / (levels - 1)
  edges[0], edges[-1] = -np.inf, np.inf
  np.testing.assert_allclose(probabilities, np.diff(scipy.stats.norm.cdf(edges, mean, std)),
                             atol=1e-6)


@pytest.mark.parametrize("value_range,levels", [*((r, 256) for r in RANGES), ((0.0, 255.0), 256),
                                                ((-3.0, 5.0), 32)])
def test_the_edge_bins_are_found_from_the_level_index(value_range, levels):
  """Values a rounding error off the first / last level, or beyond the range, take the edge bins'
  tails (the old `x < -0.999` test only held for [-1, 1])."""
  low, high = value_range
  step = (high - low) / (levels - 1)
  mean, std = low + 0.4 * (high - low), 0.2 * (high - low)
  below = np.array([low, low + 1e-3 * step, low - 0.3 * step])
  above = np.array([high, high - 1e-3 * step, high + 0.3 * step])
  x = jnp.asarray(np.concatenate([below, above]), jnp.float32)
  x64 = np.asarray(x, np.float64)
  expected = np.concatenate([scipy.stats.norm.logcdf(x64[:3] + step / 2, mean, std),
                             scipy.stats.norm.logsf(x64[3:] - step / 2, mean, std)])
  log_p = discretized_gaussian_log_prob(x, mean, math.log(std), value_range, levels)
  np.testing.assert_allclose(log_p, expected, rtol=1e-5)


# (level k, distance d in stds with mean = x_k - d std, log std in units of the range's width)
TAIL_CASES = list(itertools.product((0, 3, 128, 250, 255),
                                    (-100.0, -20.0, -6.0, 0.0, 0.7, 6.0, 20.0, 100.0), (-6.0, -3.0)))


@pytest.mark.parametrize("value_range", RANGES)
def test_values_and_gradients_match_float64_far_into_the_tails(value_range):
  """The old linear-space VAE code floored every bin at 1e-12 (an NLL cap of 27.6 nats, zero
  gradient); here a pixel 20 stds from the mean costs its true ~200+ nats and pulls the mean back."""
  low, high = value_range
  width = high - low
  levels, distances, log_stds = (np.asarray(v) for v in zip(*TAIL_CASES))
  x = low + width * levels / 255
  std = np.exp(log_stds) * width
  mean = x - distances * std
  args = [jnp.asarray(v, jnp.float32) for v in (x, mean, np.log(std))]
  # Reference on the float32 inputs, so only the computation is compared.
  x32, mean32, std32 = (np.asarray(v, np.float64) for v in (args[0], args[1], np.exp(args[2])))
  log_prob = lambda x, mean, log_std: discretized_gaussian_log_prob(x, mean, log_std, value_range)
  values = np.asarray(jax.jit(log_prob)(*args), np.float64)
  expected = np.array([reference_log_prob(*v, value_range) for v in zip(x32, mean32, std32)])
  np.testing.assert_allclose(values, expected, rtol=2e-6, atol=2e-5)
  interior_far = (np.abs(distances) == 20) & (levels > 0) & (levels < 255)
  assert np.all(-values[interior_far] > 150.0)  # far beyond the old cap of 27.6 nats

  # d log P / d mean = (phi(a) - phi(b)) / (std P), in float64 from the reference log P.
  grad = np.asarray(jax.jit(jax.grad(lambda mean: log_prob(args[0], mean, args[2]).sum()))(args[1]))
  half_bin = 0.5 * width / 255
  a = np.where(levels == 0, -np.inf, (x32 - half_bin - mean32) / std32)
  b = np.where(levels == 255, np.inf, (x32 + half_bin - mean32) / std32)
  expected_grad = (np.exp(scipy.stats.norm.logpdf(a) - expected)
                   - np.exp(scipy.stats.norm.logpdf(b) - expected)) / std32
  assert np.all(np.isfinite(grad))
  # In std units; float32 log-densities near -d^2/2 carry ~d^2 eps of rounding, hence the d^2 term.
  tolerance = 1e-6 + (1e-5 + 2e-7 * distances**2) * np.abs(expected_grad * std32)
  assert np.all(np.abs(grad - expected_grad) * std32 <= tolerance)
  # Every pixel 6+ stds off the mean, bar an edge bin that takes the mean's tail, pulls the mean.
  pulls = (np.abs(distances) >= 6) & ~((levels == 0) & (distances > 0)) & \
    ~((levels == 255) & (distances < 0))
  assert np.all(np.abs(grad[pulls]) * std32[pulls] > 5.0)


def test_values_and_gradients_are_finite_over_the_whole_parameter_range():
  """Every level against means from -2 to 3 and log stds over the VAE's clip range [-7, 5]."""
  grid = np.meshgrid(np.arange(256) / 255, np.linspace(-2.0, 3.0, 41), np.linspace(-7.0, 5.0, 25))
  x, mean, log_std = (jnp.asarray(v.ravel(), jnp.float32) for v in grid)
  total = lambda mean, log_std: discretized_gaussian_log_prob(x, mean, log_std, (0.0, 1.0)).sum()
  value, grads = jax.jit(jax.value_and_grad(total, argnums=(0, 1)))(mean, log_std)
  assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


def test_vae_decoder_is_the_diffusion_decoder_after_mapping_the_range():
  """x in [0, 1] with N(mean, std^2) is 2x - 1 in [-1, 1] with N(2 mean - 1, (2 std)^2): the
  same bin masses, including far-tail pixels."""
  rng = np.random.default_rng(0)
  shape = (4, 7, 7, 1)
  x = rng.integers(0, 256, shape) / 255
  log_std = rng.uniform(-5.0, -3.0, shape)
  mean = x + 0.5 * np.exp(log_std) * rng.normal(size=shape)
  # One pixel per image 25 stds from its mean, on the side of the range's centre, so that even an
  # edge pixel is in the tail: each costs more than 300 nats.
  mean[:, 0, 0] = x[:, 0, 0] + 25 * np.exp(log_std[:, 0, 0]) * np.where(x[:, 0, 0] > 0.5, -1, 1)
  out = jnp.asarray(np.concatenate([mean, log_std], axis=-1), jnp.float32)
  vae = jax.jit(DiscretizedGaussian.log_prob)(out, jnp.asarray(x, jnp.float32))
  diffusion = jax.jit(discretized_gaussian_log_prob, static_argnums=3)(*(
    jnp.asarray(v, jnp.float32) for v in (2 * x - 1, 2 * mean - 1, log_std + math.log(2.0))),
    (-1.0, 1.0))
  assert vae.shape == (4,)
  np.testing.assert_allclose(vae, diffusion.reshape(4, -1).sum(axis=1), rtol=1e-5)
  assert np.all(-vae > 300.0)
