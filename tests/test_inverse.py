"""The inverse-problem solvers (genjax.diffusion.inverse) on an exact Gaussian prior, where the
posterior p(x_0 | y) of a linear measurement y = A x_0 + sigma_y n is known in closed form: the
restoration counterpart of the samplers' exactness tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.diffusion import editing, inverse
from genjax.diffusion.gaussian import gaussian_eps
from genjax.diffusion.processes import make_process
from genjax.families import family_config

SIDE = 4  # 4 x 4 x 1 images: 16 dimensions
MEAN = np.linspace(-0.6, 0.6, SIDE * SIDE).astype(np.float32)
VARIANCE = 0.5  # the prior N(MEAN, VARIANCE I); ΠGDM is exact for an isotropic prior
NUM = 8000


def process_named(name: str):
  config = family_config("diffusion")
  config.diffusion.process = name
  return make_process(config.diffusion)


def image_eps(process):
  """The exact eps of the prior N(MEAN, VARIANCE I) on [B, 4, 4, 1] images: with x_t = alpha x_0 +
  sigma z, eps = sigma (x - alpha MEAN) / (alpha^2 VARIANCE + sigma^2) (genjax.diffusion.gaussian's
  formula for an isotropic covariance)."""
  mean = jnp.asarray(MEAN).reshape(SIDE, SIDE, 1)

  def eps(x, t):
    alpha, sigma = (v[:, None, None, None] for v in process.marginal(t))
    return sigma * (x - alpha * mean) / (alpha**2 * VARIANCE + sigma**2)

  return eps


def test_image_eps_is_the_gaussian_oracle():
  process = process_named("ddpm")
  x = jax.random.normal(jax.random.key(0), (3, SIDE, SIDE, 1))
  t = jnp.asarray([10, 500, 990])
  oracle = gaussian_eps(process, MEAN, VARIANCE * np.eye(SIDE * SIDE, dtype=np.float32))
  np.testing.assert_allclose(
    image_eps(process)(x, t).reshape(3, -1), oracle(x.reshape(3, -1), t), atol=1e-5
  )


def matrix_of(operator) -> np.ndarray:
  """A as a [M, 16] matrix, column by column."""
  basis = jnp.eye(SIDE * SIDE).reshape(-1, SIDE, SIDE, 1)
  return np.asarray(operator.forward(basis)).reshape(SIDE * SIDE, -1).T.astype(np.float64)


def closed_form_posterior(matrix, y, noise_sigma):
  precision = np.eye(len(MEAN)) / VARIANCE + matrix.T @ matrix / noise_sigma**2
  cov = np.linalg.inv(precision)
  mean = cov @ (MEAN / VARIANCE + matrix.T @ y / noise_sigma**2)
  return mean, cov


def measurement(operator, noise_sigma, seed=0):
  """One y = A x_0 + sigma_y n for an x_0 drawn from the prior, repeated NUM times."""
  rng = np.random.default_rng(seed)
  x0 = (MEAN + np.sqrt(VARIANCE) * rng.normal(size=MEAN.shape)).astype(np.float32)
  y = np.asarray(operator.forward(jnp.asarray(x0).reshape(1, SIDE, SIDE, 1)))[0]
  y = y + noise_sigma * rng.normal(size=y.shape).astype(np.float32)
  return y, jnp.broadcast_to(jnp.asarray(y), (NUM, *y.shape))


def solve(solver, process_name, operator, noise_sigma, num_steps, **settings):
  process = process_named(process_name)
  y, batch = measurement(operator, noise_sigma)
  run = jax.jit(
    lambda rng, batch: solver(
      process,
      image_eps(process),
      rng,
      batch,
      operator,
      noise_sigma,
      (SIDE, SIDE, 1),
      num_steps,
      **settings,
    )
  )
  samples = np.asarray(run(jax.random.key(1), batch), np.float64).reshape(NUM, -1)
  return y.reshape(-1).astype(np.float64), samples


@pytest.mark.parametrize(
  ("operator", "noise_sigma"),
  [
    (inverse.Downsample(2), 0.2),
    (inverse.Identity(), 0.3),
    (inverse.Mask(jnp.asarray(np.arange(16).reshape(4, 4, 1) % 3 != 0, jnp.float32)), 0.1),
  ],
  ids=["downsample2", "denoise", "mask"],
)
def test_pigdm_samples_the_exact_gaussian_posterior(operator, noise_sigma):
  y, samples = solve(
    inverse.pigdm, "ddpm", operator, noise_sigma, 1000, eta=1.0, prior_variance=VARIANCE
  )
  mean, cov = closed_form_posterior(matrix_of(operator), y, noise_sigma)
  np.testing.assert_allclose(samples.mean(0), mean, atol=0.03)
  np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.025)
  # The test can fail: the posterior is far from the prior the samples would keep without guidance.
  assert np.abs(cov - VARIANCE * np.eye(len(MEAN))).max() > 0.09


def test_pigdm_with_a_wrong_prior_variance_is_measurably_off():
  """r_t matters: prior_variance 0.01 for data of variance 0.5 moves the samples' mean away from the
  closed form by more than the tolerance above."""
  operator, noise_sigma = inverse.Downsample(2), 0.2
  y, samples = solve(
    inverse.pigdm, "ddpm", operator, noise_sigma, 1000, eta=1.0, prior_variance=0.01
  )
  mean, _ = closed_form_posterior(matrix_of(operator), y, noise_sigma)
  assert np.abs(samples.mean(0) - mean).max() > 0.08


def test_ddnm_inpainting_keeps_known_pixels_and_samples_the_rest_from_the_prior():
  """For an isotropic Gaussian prior the unknown pixels are independent of the known ones, so the
  exact posterior there is the prior; noiseless DDNM must return the known pixels exactly."""
  mask = np.zeros((SIDE, SIDE, 1), np.float32)
  mask[:2] = 1.0
  operator = inverse.Mask(jnp.asarray(mask))
  y, samples = solve(inverse.ddnm, "ddpm", operator, 0.0, 1000, eta=1.0)
  known = mask.reshape(-1) == 1
  np.testing.assert_allclose(
    samples[:, known], np.broadcast_to(y[known], samples[:, known].shape), atol=1e-5
  )
  np.testing.assert_allclose(samples[:, ~known].mean(0), MEAN[~known], atol=0.04)
  np.testing.assert_allclose(samples[:, ~known].var(0), VARIANCE, rtol=0.08)


@pytest.mark.parametrize("factor", [2, 4])
def test_ddnm_super_resolution_is_measurement_consistent(factor):
  """Noiseless DDNM: downsampling the output gives back the input; the output is not just the
  nearest-neighbour upsampling (the prior fills in detail)."""
  operator = inverse.Downsample(factor)
  _, samples = solve(inverse.ddnm, "ddpm", operator, 0.0, 50)
  images = samples.reshape(NUM, SIDE, SIDE, 1)
  y, _ = measurement(operator, 0.0)
  np.testing.assert_allclose(
    np.asarray(operator.forward(jnp.asarray(images))),
    np.broadcast_to(y, (NUM, *y.shape)),
    atol=1e-5,
  )
  nearest = np.asarray(operator.pseudo_inverse(jnp.asarray(y)[None]))[0]
  assert np.abs(images - nearest).mean() > 0.1


def test_denoising_residuals_ddnm_keeps_the_noise_pigdm_does_not():
  """Exact posterior samples of y = x + sigma n lie sigma (rms) from y. ΠGDM does; DDNM+ re-injects
  the same measurement noise at every step, so its output stays close to y (module docstring)."""
  process, noise_sigma = process_named("ddpm"), 0.5
  rng = np.random.default_rng(3)
  clean = MEAN + np.sqrt(VARIANCE) * rng.normal(size=(512, SIDE * SIDE))
  noisy = jnp.asarray(clean + noise_sigma * rng.normal(size=clean.shape), jnp.float32).reshape(
    -1, SIDE, SIDE, 1
  )
  rms = {}
  for name, solver, settings in (
    ("ddnm", inverse.ddnm, {}),
    ("pigdm", inverse.pigdm, {"prior_variance": VARIANCE}),
  ):
    out = solver(
      process,
      image_eps(process),
      jax.random.key(0),
      noisy,
      inverse.Identity(),
      noise_sigma,
      (SIDE, SIDE, 1),
      200,
      **settings,
    )
    rms[name] = float(np.sqrt(np.mean((np.asarray(out) - np.asarray(noisy)) ** 2)))
  assert rms["ddnm"] < 0.3 * noise_sigma
  assert 0.85 * noise_sigma < rms["pigdm"] < 1.15 * noise_sigma


def test_sdedit_from_the_noise_level_samples_the_exact_denoising_posterior():
  """y = x_0 + sigma n scaled by alpha(t*), where sigma(t*) / alpha(t*) = sigma, is a sample of x_t*
  given x_0, so the sampler from t* draws from p(x_0 | y) (editing.denoise)."""
  process, noise_sigma = process_named("vp"), 0.3
  y, batch = measurement(inverse.Identity(), noise_sigma)
  samples = jax.jit(
    lambda rng, y: editing.denoise(process, image_eps(process), rng, y, noise_sigma, 1000)
  )(jax.random.key(2), batch)
  samples = np.asarray(samples, np.float64).reshape(NUM, -1)
  mean, cov = closed_form_posterior(matrix_of(inverse.Identity()), y.reshape(-1), noise_sigma)
  np.testing.assert_allclose(samples.mean(0), mean, atol=0.03)
  np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.025)


def test_operators_match_their_matrices():
  """adjoint is A^T, pseudo_inverse is A^T (A A^T)^-1 and gram_value the eigenvalue of A A^T."""
  mask = (np.arange(SIDE * SIDE).reshape(SIDE, SIDE, 1) % 3 != 0).astype(np.float32)
  for operator in (inverse.Identity(), inverse.Mask(jnp.asarray(mask)), inverse.Downsample(2)):
    matrix = matrix_of(operator)
    y = np.random.default_rng(0).normal(size=matrix.shape[0]).astype(np.float32)
    shaped = jnp.asarray(y).reshape(1, *operator.forward(jnp.zeros((1, SIDE, SIDE, 1))).shape[1:])
    np.testing.assert_allclose(
      np.asarray(operator.adjoint(shaped)).reshape(-1), matrix.T @ y, atol=1e-6
    )
    gram = matrix @ matrix.T
    np.testing.assert_allclose(np.linalg.eigvalsh(gram)[-1], operator.gram_value, atol=1e-6)
    np.testing.assert_allclose(
      np.asarray(operator.pseudo_inverse(shaped)).reshape(-1), np.linalg.pinv(matrix) @ y, atol=1e-5
    )
  with pytest.raises(ValueError, match="must be divisible"):
    inverse.Downsample(3).forward(jnp.zeros((1, 4, 4, 1)))
