"""Exactness of the diffusion processes, samplers and likelihoods on Gaussian data, where the
exact noise prediction is known in closed form (genjax.diffusion.gaussian)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.diffusion import editing, likelihood, samplers
from genjax.diffusion.gaussian import gaussian_eps
from genjax.diffusion.processes import make_process
from genjax.diffusion.samplers import make_sampler
from genjax.families import family_config

MU = np.array([1.0, -0.5], np.float32)
COV = np.array([[1.0, 0.6], [0.6, 0.5]], np.float32)
PROCESSES = ("ddpm", "ddpm_cosine", "vp", "subvp", "ve", "edm")


def make_config(process: str, **sampling):
  """The diffusion defaults with diffusion.process `process` ("ddpm_cosine": ddpm with Nichol &
  Dhariwal's cosine beta schedule) and the given sampling settings."""
  config = family_config("diffusion")
  config.diffusion.process, _, schedule = process.partition("_")
  if schedule:
    config.diffusion.beta_schedule = schedule
  if process == "edm":
    config.diffusion.sigma_min, config.diffusion.sigma_max = 0.002, 80.0
  for key, value in sampling.items():
    config.sampling[key] = value
  return config


def exact_eps(process, mean=MU, cov=COV):
  return gaussian_eps(process, mean, cov)


def gaussian_log_density(x, mean, cov):
  diff = x - mean
  _, logdet = np.linalg.slogdet(cov)
  quad = np.einsum("bi,ij,bj->b", diff, np.linalg.inv(cov), diff)
  return -0.5 * (quad + logdet + len(mean) * math.log(2 * math.pi))


def assert_moments(samples, mean=MU, cov=COV, mean_tol=0.04, cov_tol=0.07):
  samples = np.asarray(samples, np.float64)
  assert np.all(np.isfinite(samples))
  np.testing.assert_allclose(samples.mean(0), mean, atol=mean_tol)
  np.testing.assert_allclose(np.cov(samples.T), cov, atol=cov_tol)


@pytest.mark.parametrize("name", PROCESSES)
def test_forward_marginals_match_closed_form(name):
  """Simulating the forward process step by step (Markov transitions on a fine grid) reproduces
  the closed-form marginal moments alpha mu and alpha^2 Sigma + sigma^2 I at several times."""
  config = make_config(name)
  process = make_process(config.diffusion)
  if process.discrete:
    times = np.arange(process.num_timesteps)
  else:
    times = np.linspace(process.t_min, process.t_max, 400, dtype=np.float32)
  rng = jax.random.key(0)
  data = MU + jax.random.normal(rng, (20000, 2)) @ jnp.linalg.cholesky(jnp.asarray(COV)).T
  alpha0, sigma0 = process.marginal(jnp.asarray(times[0]))
  x = alpha0 * data + sigma0 * jax.random.normal(jax.random.key(1), data.shape)

  def step(x, inputs):
    (s, t), key = inputs
    if process.discrete:
      ratio, variance = process.transition(t, s)
    else:  # Euler-Maruyama (midpoint coefficients) on the SDE checks f and g, not just the marginal
      f, g = process.sde(0.5 * (s + t))
      ratio, variance = 1.0 + f * (t - s), g**2 * (t - s)
    return ratio * x + jnp.sqrt(variance) * jax.random.normal(key, x.shape), x

  pairs = jnp.asarray(np.stack([times[:-1], times[1:]], 1))
  keys = jax.random.split(jax.random.key(2), len(pairs))
  x_final, path = jax.jit(lambda x: jax.lax.scan(step, x, (pairs, keys)))(x)
  path = np.concatenate([np.asarray(path), np.asarray(x_final)[None]])
  for index in (len(times) // 4, len(times) // 2, len(times) - 1):
    alpha, sigma = (float(v) for v in process.marginal(jnp.asarray(times[index])))
    cov_t = alpha**2 * COV + sigma**2 * np.eye(2)
    scale = math.sqrt(cov_t.max())
    assert_moments(
      path[index], alpha * MU, cov_t, mean_tol=0.04 * scale, cov_tol=0.07 * cov_t.max()
    )


def test_sde_coefficients_closed_form():
  """f and g derived from the marginals equal the published SDE coefficients."""
  t = jnp.asarray([0.1, 0.5, 0.9])
  vp = make_process(make_config("vp").diffusion)
  beta = 0.1 + t * (20.0 - 0.1)
  f, g = vp.sde(t)
  np.testing.assert_allclose(f, -0.5 * beta, rtol=1e-4)
  np.testing.assert_allclose(g, jnp.sqrt(beta), rtol=1e-4)
  subvp = make_process(make_config("subvp").diffusion)
  _, g = subvp.sde(t)
  integral = 0.1 * t + 0.5 * t**2 * (20.0 - 0.1)
  np.testing.assert_allclose(g, jnp.sqrt(beta * (1 - jnp.exp(-2 * integral))), rtol=1e-3)
  ve = make_process(make_config("ve").diffusion)
  _, g = ve.sde(t)
  sigma = 0.01 * (50.0 / 0.01) ** t
  np.testing.assert_allclose(g, sigma * math.sqrt(2 * math.log(50.0 / 0.01)), rtol=1e-4)
  for name in ("vp", "subvp", "ve", "edm"):
    process = make_process(make_config(name).diffusion)
    times = jnp.asarray([0.01, 0.3, 0.7]) * process.t_max + process.t_min
    np.testing.assert_allclose(process.t_from_lambda(process.log_snr(times)), times, rtol=1e-3)


SAMPLERS = [
  ("ancestral", dict(num_steps=400)),
  ("ddim", dict(num_steps=100)),
  ("pc", dict(num_steps=300)),
  ("pc", dict(num_steps=300, predictor="euler_maruyama", corrector_steps=0)),
  ("ode", dict(rtol=1e-4, atol=1e-4)),
  ("ode", dict(adaptive=False, num_steps=40)),
  ("heun", dict(num_steps=30)),
  ("heun", dict(num_steps=60, churn=20.0)),
  ("dpm_solver", dict(num_steps=40)),
]
CONTINUOUS_ONLY = ("pc", "ode", "heun")


@pytest.mark.slow
@pytest.mark.parametrize("process_name", PROCESSES)
def test_every_sampler_with_the_exact_score_matches_the_data(process_name):
  """Each sampler, driven by the closed-form eps, gives samples with the data's mean and covariance
  (10^4 samples: standard errors ~0.01; the VE/EDM prior N(0, sigma_max^2) shifts the mean by
  ~mu / sigma_max). Samplers needing continuous time refuse ddpm; ddpm_cosine starts at its
  sampling.lambda_min floor (index 995)."""
  for name, settings in SAMPLERS:
    config = make_config(process_name, **settings)
    process = make_process(config.diffusion)
    if process.discrete and name in CONTINUOUS_ONLY:
      with pytest.raises(ValueError, match="continuous-time process"):
        make_sampler(name, process, config.sampling)
      continue
    sampler = make_sampler(name, process, config.sampling)
    eps = exact_eps(process)
    samples = jax.jit(lambda rng, sampler=sampler, eps=eps: sampler(eps, rng, (10000, 2)))(
      jax.random.key(3)
    )
    try:
      assert_moments(samples)
    except AssertionError as error:
      raise AssertionError(f"{process_name}/{name} {settings}: {error}") from None


# The configs' few-step settings (ddpm_mnist: 50 ancestral steps, or DDIM with
# --config.sampling.sampler=ddim; text2img_*: 20-step DPM-Solver++) and the covariance tolerance
# their discretization bias needs, measured on the linear schedule with 10^5 samples: the
# ancestral step omits Var[x_0 | x_t] from its variance (Bao et al. 2022), -0.14; DDIM -0.067;
# DPM-Solver++(2M) +0.045 (+0.003 at 40 steps: second order). The cosine schedule's are smaller.
FEW_STEP_SAMPLERS = [
  ("ancestral", dict(num_steps=50), 0.17),
  ("ddim", dict(num_steps=50), 0.09),
  ("dpm_solver", dict(num_steps=20), 0.065),
]


@pytest.mark.slow
@pytest.mark.parametrize("process_name", ["ddpm", "ddpm_cosine"])
def test_few_step_samplers_are_exact_and_well_conditioned(process_name):
  """The few-step samplers of the configs, driven by the exact eps and by (1 + delta) eps (a
  network's error, delta = 1e-3) with the same noise: the exact samples have the data's moments
  (up to the sampler's bias, FEW_STEP_SAMPLERS) and the error moves them by rms < 10 delta.

  x_0_hat = (x - sigma eps) / alpha turns an eps error into an x_0_hat error e^{-lambda} times
  larger: 2e4 at the cosine schedule's last index (alpha_bar = 2.4e-9, lambda = -9.9). Started
  there (sampling.lambda_min = -inf) the samples moved by 19 (ancestral), 530 (ddim) and 29
  (dpm_solver) delta; from lambda_min = -5.1 (index 995) by 1.3, 7.3 and 3.9 delta, the linear
  schedule's 1.2, 4.5 and 3.9."""
  delta = 1e-3
  for name, settings, cov_tol in FEW_STEP_SAMPLERS:
    config = make_config(process_name, **settings)
    process = make_process(config.diffusion)
    sampler = make_sampler(name, process, config.sampling)
    eps = exact_eps(process)
    run = jax.jit(
      lambda rng, scale, sampler=sampler, eps=eps: sampler(
        lambda x, t: scale * eps(x, t), rng, (100000, 2)
      )
    )
    exact = np.asarray(run(jax.random.key(3), 1.0), np.float64)
    perturbed = np.asarray(run(jax.random.key(3), 1.0 + delta), np.float64)
    sensitivity = np.sqrt(np.mean((perturbed - exact) ** 2)) / delta
    try:
      assert_moments(exact, cov_tol=cov_tol)
      assert sensitivity < 10, f"an eps error of {delta} moved the samples by {sensitivity} delta"
    except AssertionError as error:
      raise AssertionError(f"{process_name}/{name} {settings}: {error}") from None


def test_the_log_snr_floor_moves_only_the_start_of_schedules_below_it():
  """sampling.lambda_min (-5.1) starts the cosine schedule at index 995, the largest with
  lambda >= -5.1 (its prior N(0, sigma_995^2 I), its grids from 995; asked for more steps than
  those 996, e.g. the default 1000, it samples all 996), and leaves the linear schedule and the continuous processes' defaults
  as they are (their lambda(T) >= -5.06). On a continuous process the start solves
  lambda(t) = lambda_min; a floor above lambda(t_min) leaves nothing to sample."""
  config = make_config("ddpm_cosine")
  process = make_process(config.diffusion)
  lambdas = np.asarray(process.log_snr(jnp.arange(1000)))
  assert lambdas[995] >= -5.1 > lambdas[996] and lambdas[999] < -9.9
  floored = process.truncated(config.sampling.lambda_min)
  assert (floored.t_max, process.t_max) == (995, 999)
  np.testing.assert_allclose(floored.prior_std(), math.sqrt(1 - process.alpha_bars[995]))
  assert floored.sampling_times(50)[0] == 995 and floored.sampling_times(996)[-1] == 0
  assert samplers.log_snr_uniform_times(floored, 20)[0] == 995
  np.testing.assert_array_equal(floored.sampling_times(1000), np.arange(995, -1, -1))
  with pytest.raises(ValueError, match=r"\[2, diffusion.num_timesteps=1000\]"):
    floored.sampling_times(1001)
  for name in set(PROCESSES) - {"ddpm_cosine"}:
    unfloored = make_process(make_config(name).diffusion)
    assert unfloored.truncated(-5.1) is unfloored, name
  vp = make_process(make_config("vp").diffusion)
  start = vp.truncated(-3.0).t_max
  assert vp.t_min < start < vp.t_max
  np.testing.assert_allclose(vp.log_snr(jnp.asarray(start)), -3.0, atol=1e-4)
  for unsampleable in (vp, process):
    with pytest.raises(ValueError, match="leaves no time to sample"):
      unsampleable.truncated(10.0)


def flow_log_density(process, x):
  """log p of the model "prior N(0, sigma_T^2 I) pushed through the exact probability-flow ODE":
  for Gaussian data the flow is affine, x_T - alpha_T mu = C_T^(1/2) C_0^(-1/2) (x - alpha_0 mu)
  (all C_t share eigenvectors), so log p(x) = log N(x_T; 0, sigma_T^2 I) + log det(C_T^(1/2)
  C_0^(-1/2))."""
  eigenvalues, vectors = np.linalg.eigh(COV.astype(np.float64))
  (alpha0, sigma0), (alpha_t, sigma_t) = (
    (float(v) for v in process.marginal(jnp.asarray(time, jnp.float32)))
    for time in (process.t_min, process.t_max)
  )
  var0, var_t = alpha0**2 * eigenvalues + sigma0**2, alpha_t**2 * eigenvalues + sigma_t**2
  coords = (x - alpha0 * MU) @ vectors * np.sqrt(var_t / var0) + alpha_t * (MU @ vectors)
  log_prior = (
    -0.5 * np.sum(coords**2, 1) / sigma_t**2 - 2 * math.log(sigma_t) - math.log(2 * math.pi)
  )
  return log_prior + 0.5 * np.sum(np.log(var_t / var0))


@pytest.mark.parametrize("process_name", ["vp", "subvp", "ve", "edm"])
def test_ode_log_likelihood_matches_the_gaussian_density(process_name):
  """The probability-flow ODE log-likelihood, integrated from t_min to T with the exact trace,
  equals
  the closed-form model density per point (1e-3 nats); it is within the prior's approximation
  (0.1 nats) of the data's log N(x; alpha mu, alpha^2 Sigma + sigma^2 I) at t_min; Hutchinson's
  estimator agrees on average."""
  config = make_config(process_name)
  process = make_process(config.diffusion)
  settings = config.eval
  settings.rtol = settings.atol = 1e-5
  x = MU + jax.random.normal(jax.random.key(4), (256, 2)) @ jnp.linalg.cholesky(jnp.asarray(COV)).T
  x_np = np.asarray(x, np.float64)
  alpha, sigma = (float(v) for v in process.marginal(jnp.asarray(process.t_min, jnp.float32)))
  data_density = gaussian_log_density(x_np, alpha * MU, alpha**2 * COV + sigma**2 * np.eye(2))
  run = jax.jit(
    lambda x, rng, estimator: likelihood.ode_log_likelihood(
      process, exact_eps(process), x, rng, settings, estimator
    ),
    static_argnums=2,
  )
  exact = np.asarray(run(x, jax.random.key(5), "exact"))
  np.testing.assert_allclose(exact, flow_log_density(process, x_np), atol=1e-3)
  np.testing.assert_allclose(exact, data_density, atol=0.1)
  hutchinson = np.asarray(run(x, jax.random.key(6), "hutchinson"))
  error = hutchinson - exact
  assert np.std(error) > 1e-3  # a stochastic estimate, not the exact trace
  assert abs(error.mean()) < 4 * np.std(error) / math.sqrt(len(error))  # unbiased


def test_bits_per_dim_convention_for_uniform_data():
  """A uniform density on [-1, 1]^D (log p = -D log 2) is 8 bits/dim for 256 grey levels."""
  dims = 12
  log_p = jnp.full((3,), -dims * math.log(2.0))
  np.testing.assert_allclose(likelihood.bits_per_dim(log_p, dims, (-1.0, 1.0)), 8.0, atol=1e-6)
  np.testing.assert_allclose(
    likelihood.bits_per_dim(jnp.zeros(3), dims, (0.0, 1.0)), 8.0, atol=1e-6
  )
  levels = jnp.asarray([0.0, 1.0, 254.0, 255.0])
  x = -1 + 2 * levels / 255
  deq = likelihood.dequantize(x, jax.random.key(0), (-1.0, 1.0))
  np.testing.assert_array_equal(jnp.floor((deq + 1) / 2 * 256), levels)


def test_ddpm_variational_bound_with_an_oracle_denoiser():
  """With x_0_hat = x_0 (an oracle eps) every KL term reduces to the variance mismatch and the
  decoder to the central bin mass, so the bound has a closed form; the Monte Carlo estimate over
  random timesteps averages to it."""
  config = make_config("ddpm")
  config.diffusion.num_timesteps = 100
  config.diffusion.beta_end = 0.2
  process = make_process(config.diffusion)
  bound = likelihood.DDPMBound(process, "fixedlarge")
  x0 = jnp.asarray(
    np.random.default_rng(0).integers(0, 256, (4, 3, 3, 1)) * 2 / 255 - 1, jnp.float32
  )
  x0 = jnp.tile(x0, (500, 1, 1, 1))

  def oracle(x, t):
    alpha, sigma = (v[:, None, None, None] for v in process.marginal(t))
    return (x - alpha * x0) / sigma

  terms = jax.jit(lambda rng: bound.total(oracle, x0, rng, 0))(jax.random.key(0))
  betas, alpha_bars = process.betas, process.alpha_bars
  previous = np.append(1.0, alpha_bars[:-1])
  posterior = betas * (1 - previous) / (1 - alpha_bars)
  model = np.append(posterior[1], betas[1:])
  kl = 0.5 * (np.log(model[1:] / posterior[1:]) - 1 + posterior[1:] / model[1:])
  std0 = math.sqrt(model[0])
  from scipy.stats import norm

  decoder_per_dim = np.where(
    np.abs(np.asarray(x0)) > 0.999,
    -np.log(norm.cdf(1 / 255 / std0)),
    -np.log(norm.cdf(1 / 255 / std0) - norm.cdf(-1 / 255 / std0)),
  )
  prior = 0.5 * (
    alpha_bars[-1] * np.asarray(x0) ** 2 + (1 - alpha_bars[-1]) - 1 - np.log(1 - alpha_bars[-1])
  )
  expected = (
    9 * kl.sum() + decoder_per_dim.reshape(len(x0), -1).sum(1) + prior.reshape(len(x0), -1).sum(1)
  )
  np.testing.assert_allclose(terms["vlb"], expected, rtol=2e-3)
  estimate = jax.jit(lambda rng: bound.total(oracle, x0, rng, 2))(jax.random.key(1))
  np.testing.assert_allclose(estimate["decoder"], terms["decoder"], rtol=1e-4)
  error = np.asarray(estimate["vlb"]) - expected
  assert np.std(error) > 0.01  # random timesteps per example
  assert abs(error.mean()) < 4 * np.std(error) / math.sqrt(len(error))  # unbiased


def test_classifier_free_guidance_combines_conditional_and_unconditional():
  labels = jnp.asarray([0, 1, 1])

  def eps(x, t, y):
    return x + 10.0 * (y[:, None] == 2).astype(x.dtype) + y[:, None].astype(x.dtype)

  guided = editing.guided_eps(eps, labels, 2, 3.0)
  x = jnp.ones((3, 2))
  # (1 + w) (x + y) - w (x + 10 + 2)
  expected = 4 * (x + labels[:, None]) - 3 * (x + 12.0)
  np.testing.assert_allclose(guided(x, jnp.zeros(3)), expected)
  np.testing.assert_allclose(
    editing.guided_eps(eps, labels, 2, 0.0)(x, jnp.zeros(3)), x + labels[:, None]
  )


@pytest.mark.parametrize("process_name", ["ddpm", "ve"])
def test_inpainting_keeps_known_values_and_resampling_reaches_the_conditional(process_name):
  """Known coordinate fixed at c: the output keeps it exactly, and the unknown coordinate moves from
  its marginal towards the Gaussian conditional x_2 | x_1 = c (mean mu_2 + Sigma_21 / Sigma_11
  (c - mu_1)). Plain replacement is biased (it under-corrects: Song et al. 2021b, RePaint), so it
  only has to close most of the gap; RePaint's resampling (5 passes per step, 300 steps: with
  coarser steps the repeated passes shrink the variance) must get closer, to the conditional's
  mean and variance within a tolerance."""
  process = make_process(make_config(process_name).diffusion)
  count, c = 8000, 2.0
  x_known = jnp.tile(jnp.asarray([[c, 0.0]]), (count, 1))
  mask = jnp.tile(jnp.asarray([[1.0, 0.0]]), (count, 1))
  run = jax.jit(
    lambda rng, steps, resample: editing.inpaint(
      process, exact_eps(process), rng, x_known, mask, steps, resample_steps=resample
    ),
    static_argnums=(1, 2),
  )
  conditional_mean = MU[1] + COV[1, 0] / COV[0, 0] * (c - MU[0])
  conditional_var = COV[1, 1] - COV[1, 0] ** 2 / COV[0, 0]
  gap = abs(MU[1] - conditional_mean)
  replaced = np.asarray(run(jax.random.key(7), 200, 1))
  np.testing.assert_array_equal(replaced[:, 0], c)
  replacement_error = abs(replaced[:, 1].mean() - conditional_mean)
  assert replacement_error < 0.5 * gap
  assert replaced[:, 1].var() < COV[1, 1] and replaced[:, 1].var() > 0.5 * conditional_var
  resampled = np.asarray(run(jax.random.key(8), 300, 5))
  np.testing.assert_array_equal(resampled[:, 0], c)
  resampled_error = abs(resampled[:, 1].mean() - conditional_mean)
  assert resampled_error < 0.5 * replacement_error, (resampled_error, replacement_error)
  assert resampled_error < 0.15 * gap
  assert abs(resampled[:, 1].var() / conditional_var - 1) < 0.15
  with pytest.raises(ValueError, match="resample_steps"):
    editing.inpaint(process, exact_eps(process), jax.random.key(0), x_known, mask, 10, resample_steps=0)


def test_sdedit_preserves_the_data_distribution_and_follows_strength():
  """Edits of data samples are again data-distributed (exact score); small strength stays close to
  the input, strength 1 forgets it."""
  process = make_process(make_config("vp").diffusion)
  x = MU + jax.random.normal(jax.random.key(8), (8000, 2)) @ jnp.linalg.cholesky(jnp.asarray(COV)).T
  run = jax.jit(
    lambda rng, strength: editing.sdedit(process, exact_eps(process), rng, x, strength, 200),
    static_argnums=1,
  )
  half = np.asarray(run(jax.random.key(9), 0.5))
  assert_moments(half)
  weak = np.asarray(run(jax.random.key(10), 0.02))
  full = np.asarray(run(jax.random.key(11), 1.0))
  assert np.abs(weak - np.asarray(x)).mean() < 0.1
  assert np.corrcoef(full[:, 0], np.asarray(x)[:, 0])[0, 1] < 0.05
  with pytest.raises(ValueError, match="strength"):
    editing.sdedit(process, exact_eps(process), jax.random.key(0), x, 0.0, 10)


def test_clipped_eps_clips_the_implied_denoised_value_only_where_it_leaves_the_range():
  process = make_process(make_config("ddpm").diffusion)
  x = jnp.asarray([[0.3, -2.5], [4.0, 0.1]])
  t = jnp.asarray([10, 500])
  raw = lambda x, t: jnp.full_like(x, 0.2)
  alpha, sigma = (v[:, None] for v in process.marginal(t))
  x0 = (x - sigma * 0.2) / alpha
  clipped = samplers.clipped_eps(process, raw, -1.0, 1.0)(x, t)
  np.testing.assert_allclose((x - sigma * clipped) / alpha, np.clip(x0, -1.0, 1.0), rtol=1e-5, atol=1e-5)
  inside = np.abs(np.asarray(x0)) <= 1.0
  assert inside.any() and (~inside).any()
  np.testing.assert_allclose(np.asarray(clipped)[inside], 0.2, rtol=1e-4)
