"""Forward noising processes: discrete DDPM, the VP / sub-VP / VE SDEs (Song et al. 2021) and EDM.

Every process has Gaussian marginals

  x_t | x_0 ~ N(alpha(t) x_0, sigma(t)^2 I),   lambda(t) = log(alpha(t) / sigma(t))  (half log-SNR),

which is all the samplers, objectives and likelihoods need. Continuous processes are the linear SDE
dx = f(t) x dt + g(t) dw with f = d log(alpha)/dt and g^2 = d(sigma^2)/dt - 2 f sigma^2 (derived
here by automatic differentiation of the marginal), running from t_min to t_max; `t_from_lambda`
inverts lambda(t), which gives likelihood-weighting importance sampling (uniform in lambda) and
EDM's Heun sampler in the variance-exploding coordinates y = x / alpha, sigma_ve = exp(-lambda).
The discrete DDPM process has integer times 0..N-1 (Ho et al.'s t = 1..N) and no SDE.
"""

from __future__ import annotations

import copy
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from genjax.distributions import gaussian_log_prob
from genjax.registry import Registry

PROCESSES: Registry[type[Process]] = Registry("diffusion process")


def broadcast_per_example(values: jax.Array, x: jax.Array) -> jax.Array:
  """Per-example values [B] (or a scalar) as [B, 1, ..., 1], broadcastable against x [B, ...]."""
  return jnp.reshape(values, jnp.shape(values) + (1,) * (x.ndim - jnp.ndim(values)))


class Process:
  """The interface; subclasses define `marginal` (and `t_from_lambda` when continuous)."""

  discrete = False
  t_min = 1e-3
  t_max = 1.0

  def marginal(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(alpha(t), sigma(t)), each with the shape of t."""
    raise NotImplementedError

  def log_snr(self, t: jax.Array) -> jax.Array:
    """lambda(t) = log(alpha / sigma)."""
    alpha, sigma = self.marginal(t)
    return jnp.log(alpha) - jnp.log(sigma)

  def t_from_lambda(self, lam: jax.Array) -> jax.Array:
    """The time whose lambda(t) is `lam` (continuous processes)."""
    raise NotImplementedError

  def network_time(self, t: jax.Array) -> jax.Array:
    """The scalar per example the network is conditioned on."""
    return t * 999.0

  # --- SDE ----------------------------------------------------------------------------------------
  def sde(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(f(t), g(t)) of the forward SDE dx = f(t) x dt + g(t) dw; t of any shape."""

    def log_alpha_and_variance(time):
      alpha, sigma = self.marginal(time)
      return jnp.log(alpha), sigma**2

    t = jnp.asarray(t, jnp.float32)
    (_, variance), (drift, variance_rate) = jax.jvp(
      log_alpha_and_variance, (t,), (jnp.ones_like(t),)
    )
    return drift, jnp.sqrt(jnp.maximum(variance_rate - 2 * drift * variance, 0.0))

  def transition(self, t: jax.Array, s: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x_t | x_s ~ N(a x_s, v I) for s < t:
    (a, v) = (alpha_t / alpha_s, sigma_t^2 - a^2 sigma_s^2)."""
    alpha_t, sigma_t = self.marginal(t)
    alpha_s, sigma_s = self.marginal(s)
    ratio = alpha_t / alpha_s
    return ratio, jnp.maximum(sigma_t**2 - ratio**2 * sigma_s**2, 0.0)

  # --- prior and time grids -----------------------------------------------------------------------
  def prior_std(self) -> float:
    """sigma(t_max), a Python float (evaluated eagerly, also while tracing)."""
    with jax.ensure_compile_time_eval():
      return float(self.marginal(jnp.asarray(self.t_max, jnp.float32))[1])

  def prior_sample(self, rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """x_T ~ N(0, sigma(T)^2 I) (alpha(T) x_0 is neglected, as in Ho et al. and Song et al.)."""
    return self.prior_std() * jax.random.normal(rng, shape)

  def prior_log_prob(self, z: jax.Array) -> jax.Array:
    """log N(z; 0, sigma(T)^2 I) summed over all but the batch axis; [B]."""
    log_std = math.log(self.prior_std())
    return gaussian_log_prob(z, 0.0, log_std).reshape(z.shape[0], -1).sum(axis=1)

  def truncated(self, lambda_min: float) -> Process:
    """This process with t_max lowered to the largest time whose lambda(t) >= lambda_min (itself
    when lambda(t_max) >= lambda_min already), for samplers that start there.

    Starting at t_s instead of T replaces q(x_{t_s}) = N(alpha mu, alpha^2 Sigma + sigma^2 I) (data
    mean mu, covariance Sigma) by the prior N(0, sigma^2 I): the KL between the two is
    e^{2 lambda} |mu|^2 / 2 + O(e^{4 lambda}), 1.9e-5 |mu|^2 nats at lambda = -5.1, and for
    Gaussian data the exact flow moves the sample mean by -e^{lambda} Sigma^{1/2} mu (to first
    order in e^{lambda}; alpha = 0.0061 at lambda = -5.1)."""
    with jax.ensure_compile_time_eval():
      if self.discrete:
        lambdas = np.asarray(self.log_snr(jnp.arange(self.t_max + 1)))
        if lambdas[-1] >= lambda_min:
          return self
        start = int(np.flatnonzero(lambdas >= lambda_min).max(initial=0))
      else:
        if float(self.log_snr(jnp.asarray(self.t_max, jnp.float32))) >= lambda_min:
          return self
        start = float(self.t_from_lambda(jnp.asarray(lambda_min, jnp.float32)))
    if not start > self.t_min:
      raise ValueError(
        f"sampling.lambda_min={lambda_min} leaves no time to sample: lambda(t_min) = "
        f"{float(self.log_snr(jnp.asarray(self.t_min, jnp.float32))):.3f} is below it."
      )
    process = copy.copy(self)
    process.t_max = start
    return process

  def sampling_times(self, num_steps: int) -> np.ndarray:
    """num_steps decreasing times from t_max to t_min (float32 numpy)."""
    return np.linspace(self.t_max, self.t_min, num_steps, dtype=np.float32)

  def train_times(self, rng: jax.Array, batch_size: int) -> jax.Array:
    """Times for the training loss, uniform on [t_min, t_max]; [B]."""
    return jax.random.uniform(rng, (batch_size,), minval=self.t_min, maxval=self.t_max)

  def describe(self) -> str:
    return type(self).__name__


def _check_positive(**values: float) -> None:
  for name, value in values.items():
    if not value > 0:
      raise ValueError(f"diffusion.{name} must be positive, got {value}.")


@PROCESSES.register("ddpm")
class DDPM(Process):
  """Discrete DDPM (Ho et al. 2020): beta_1..beta_N linear in [beta_start, beta_end] or the cosine
  schedule of Nichol & Dhariwal 2021; alpha_bar_i = prod_{j<=i} (1 - beta_j), alpha =
  sqrt(alpha_bar),
  sigma = sqrt(1 - alpha_bar). Times are indices i = 0..N-1 (Ho's t = i + 1)."""

  discrete = True

  def __init__(self, config: ml_collections.ConfigDict):
    steps = config.num_timesteps
    if steps < 2:
      raise ValueError(f"diffusion.num_timesteps must be at least 2, got {steps}.")
    if config.beta_schedule == "linear":
      _check_positive(beta_start=config.beta_start, beta_end=config.beta_end)
      betas = np.linspace(config.beta_start, config.beta_end, steps, dtype=np.float64)
    elif config.beta_schedule == "cosine":
      s = 0.008
      f = np.cos((np.arange(steps + 1) / steps + s) / (1 + s) * np.pi / 2) ** 2
      betas = np.clip(1 - f[1:] / f[:-1], 0.0, 0.999)
    else:
      raise ValueError(
        f"Unknown diffusion.beta_schedule {config.beta_schedule!r}; use linear or cosine."
      )
    self.num_timesteps = steps
    self.betas = betas
    self.alpha_bars = np.cumprod(1.0 - betas)
    self.t_min, self.t_max = 0, steps - 1

  def marginal(self, t):
    alpha_bar = jnp.asarray(self.alpha_bars, jnp.float32)[jnp.asarray(t).astype(jnp.int32)]
    return jnp.sqrt(alpha_bar), jnp.sqrt(1.0 - alpha_bar)

  def network_time(self, t):
    return jnp.asarray(t, jnp.float32)

  def sde(self, t):
    raise ValueError(
      "The discrete ddpm process has no SDE; use diffusion.process='vp' (its continuous limit)."
    )

  def sampling_times(self, num_steps):
    """num_steps evenly spaced indices from t_max (N-1 unless truncated) down to 0 (all of them for
    num_steps = t_max + 1). A truncated process asked for more (e.g. all N of the cosine
    schedule) uses its t_max + 1 indices, with a warning."""
    if not 2 <= num_steps <= self.num_timesteps:
      raise ValueError(
        f"sampling.num_steps={num_steps} must lie in "
        f"[2, diffusion.num_timesteps={self.num_timesteps}]."
      )
    if num_steps > self.t_max + 1:
      logging.warning(
        "sampling.num_steps=%d: only the %d timesteps 0..%d have lambda >= sampling.lambda_min; "
        "sampling all of those (set sampling.lambda_min=-inf to start at %d).",
        num_steps, self.t_max + 1, self.t_max, self.num_timesteps - 1,
      )
      num_steps = self.t_max + 1
    return np.round(np.linspace(self.t_max, 0, num_steps)).astype(np.int32)

  def train_times(self, rng, batch_size):
    return jax.random.randint(rng, (batch_size,), 0, self.num_timesteps)

  def describe(self):
    return f"DDPM({self.num_timesteps} steps)"


def _vp_integral(t, beta_min, beta_max):
  """I(t) = 1/2 int_0^t beta(s) ds for beta(s) = beta_min + s (beta_max - beta_min)."""
  return 0.25 * t**2 * (beta_max - beta_min) + 0.5 * t * beta_min


def _vp_time_from_integral(integral, beta_min, beta_max):
  """Inverse of _vp_integral (the positive root of the quadratic)."""
  a = 0.25 * (beta_max - beta_min)
  b = 0.5 * beta_min
  if a == 0:
    return integral / b
  return (-b + jnp.sqrt(b**2 + 4 * a * integral)) / (2 * a)


@PROCESSES.register("vp")
class VP(Process):
  """Variance preserving SDE dx = -beta(t)/2 x dt + sqrt(beta(t)) dw, beta linear from beta_min to
  beta_max on t in [0, 1]: alpha = exp(-I(t)), sigma^2 = 1 - alpha^2, I(t) = 1/2 int_0^t beta."""

  def __init__(self, config: ml_collections.ConfigDict):
    _check_positive(beta_min=config.beta_min, beta_max=config.beta_max, t_min=config.t_min)
    self.beta_min, self.beta_max, self.t_min = config.beta_min, config.beta_max, config.t_min

  def marginal(self, t):
    integral = _vp_integral(t, self.beta_min, self.beta_max)
    return jnp.exp(-integral), jnp.sqrt(-jnp.expm1(-2 * integral))

  def t_from_lambda(self, lam):
    # sigma^2 / alpha^2 = exp(2 I) - 1 = exp(-2 lambda).
    return _vp_time_from_integral(0.5 * jnp.log1p(jnp.exp(-2 * lam)), self.beta_min, self.beta_max)


@PROCESSES.register("subvp")
class SubVP(VP):
  """Sub-VP SDE: the VP drift with g^2 = beta(t) (1 - exp(-4 I(t))), so sigma = 1 - alpha^2."""

  def marginal(self, t):
    alpha, _ = super().marginal(t)
    return alpha, -jnp.expm1(-2 * _vp_integral(t, self.beta_min, self.beta_max))

  def t_from_lambda(self, lam):
    # sigma / alpha = (1 - alpha^2) / alpha = exp(-lambda): alpha solves alpha^2 + e^-lambda alpha
    # - 1 = 0.
    ratio = jnp.exp(-lam)
    alpha = 2.0 / (ratio + jnp.sqrt(ratio**2 + 4.0))
    return _vp_time_from_integral(-jnp.log(alpha), self.beta_min, self.beta_max)


@PROCESSES.register("ve")
class VE(Process):
  """Variance exploding SDE dx = sigma(t) sqrt(2 log(sigma_max / sigma_min)) dw with
  sigma(t) = sigma_min (sigma_max / sigma_min)^t, alpha = 1. The network sees sigma(t) (as
  NCSN++)."""

  def __init__(self, config: ml_collections.ConfigDict):
    _check_positive(sigma_min=config.sigma_min, sigma_max=config.sigma_max, t_min=config.t_min)
    if config.sigma_max <= config.sigma_min:
      raise ValueError("diffusion.sigma_max must exceed diffusion.sigma_min.")
    self.sigma_min, self.sigma_max, self.t_min = config.sigma_min, config.sigma_max, config.t_min
    self.log_ratio = math.log(config.sigma_max / config.sigma_min)

  def marginal(self, t):
    sigma = self.sigma_min * jnp.exp(t * self.log_ratio)
    return jnp.ones_like(sigma), sigma

  def t_from_lambda(self, lam):
    return (-lam - math.log(self.sigma_min)) / self.log_ratio

  def network_time(self, t):
    return self.marginal(t)[1]


@PROCESSES.register("edm")
class EDM(Process):
  """EDM (Karras et al. 2022): sigma(t) = t, alpha = 1 (the SDE dx = sqrt(2t) dw), t in
  [sigma_min, sigma_max]; training sigmas ln(sigma) ~ N(p_mean, p_std^2); sampling times the
  rho-spaced grid; the network sees c_noise = ln(sigma) / 4."""

  def __init__(self, config: ml_collections.ConfigDict):
    _check_positive(
      sigma_min=config.sigma_min,
      sigma_max=config.sigma_max,
      rho=config.rho,
      sigma_data=config.sigma_data,
    )
    self.t_min, self.t_max = config.sigma_min, config.sigma_max
    self.rho, self.p_mean, self.p_std = config.rho, config.p_mean, config.p_std
    self.sigma_data = config.sigma_data

  def marginal(self, t):
    t = jnp.asarray(t, jnp.float32)
    return jnp.ones_like(t), t

  def t_from_lambda(self, lam):
    return jnp.exp(-lam)

  def network_time(self, t):
    return jnp.log(t) / 4.0

  def sampling_times(self, num_steps):
    ramp = np.linspace(0.0, 1.0, num_steps)
    inv_rho = 1.0 / self.rho
    grid = (self.t_max**inv_rho + ramp * (self.t_min**inv_rho - self.t_max**inv_rho)) ** self.rho
    return grid.astype(np.float32)

  def train_times(self, rng, batch_size):
    return jnp.exp(self.p_mean + self.p_std * jax.random.normal(rng, (batch_size,)))


def make_process(config: ml_collections.ConfigDict) -> Process:
  """The process named by config.process (the `diffusion` config section)."""
  return PROCESSES.get(config.process)(config)
