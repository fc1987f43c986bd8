"""Log-likelihoods: the probability-flow ODE (continuous processes) and the DDPM variational bound.

Probability-flow ODE (Song et al. 2021b, appendix D.2): with the drift F(x, t) = f x - g^2/2 score,
  log p_{t_min}(x) = log p_T(x_T) + int_{t_min}^{T} div F(x_t, t) dt,
integrated forward in time from the data (t_min) to the prior (T) together with x_t. The divergence
is the Hutchinson/Skilling estimate e^T (dF/dx) e with one Rademacher or Gaussian e per example held
fixed along the path (unbiased for log p, not for p), or the exact trace (sum over the D basis
vectors; for low-dimensional data).

Bits/dim of images follow the score_sde convention: the pixels k in {0..255} are dequantized
uniformly, x = low + (high - low) (k + u) / 256 with u ~ U[0, 1)^D, and
  bpd = -log p(x) / (D ln 2) + 8 - log2(high - low),
the discrete-data upper bound (8 - log2(2) = 7 for data in [-1, 1]).

DDPM variational bound (Ho et al. 2020, eq. 5) for data on the 256 grey levels in [-1, 1]:
  L = KL(q(x_N | x_0) || N(0, I)) + sum_{t=2}^{N} KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))
      - log p(x_0 | x_1),
with the model variance diffusion.model_variance ('fixedlarge': beta_t, with the posterior variance
at t = 1; 'fixedsmall': the posterior variance, clipped at t = 1), x_0_hat clipped to [-1, 1], and
the discretized Gaussian decoder over bins of width 2/255 (genjax.distributions). bits/dim =
L / (D ln 2). The sum over t is exact when eval.vlb_timesteps = 0, else the unbiased Monte Carlo
estimate (N - 1)/K sum_k L_{t_k} with K random t_k per example.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax.diffusion.processes import DDPM, Process, broadcast_per_example
from genjax.diffusion.samplers import EpsFn, ode_solve, probability_flow_drift
from genjax.distributions import discretized_gaussian_log_prob

LOG2 = math.log(2.0)


def _per_example_sum(values: jax.Array) -> jax.Array:
  return values.reshape(values.shape[0], -1).sum(axis=1)


def divergence_fn(estimator: str, rng: jax.Array, shape: tuple) -> Callable:
  """div(fn)(x) -> [B] for fn: [B, ...] -> [B, ...] (examples independent): 'hutchinson'
  (Rademacher probes), 'gaussian' (Hutchinson with Gaussian probes) or 'exact' (D Jacobian-vector
  products)."""
  if estimator == "hutchinson":
    probes = jax.random.rademacher(rng, shape, jnp.float32)[None]
  elif estimator == "gaussian":
    probes = jax.random.normal(rng, shape)[None]
  elif estimator == "exact":
    dims = int(np.prod(shape[1:]))
    basis = jnp.eye(dims, dtype=jnp.float32).reshape(dims, 1, *shape[1:])
    probes = jnp.broadcast_to(basis, (dims, *shape))
  else:
    raise ValueError(
      f"Unknown eval.trace_estimator {estimator!r}; use hutchinson, gaussian or exact."
    )

  def divergence(fn, x):
    def quadratic_form(probe):
      _, jvp = jax.jvp(fn, (x,), (probe,))
      return _per_example_sum(probe * jvp)

    return jnp.sum(jax.lax.map(quadratic_form, probes), axis=0)

  return divergence


def ode_log_likelihood(
  process: Process,
  eps_fn: EpsFn,
  x: jax.Array,
  rng: jax.Array,
  settings: ml_collections.ConfigDict,
  estimator: str = "hutchinson",
) -> jax.Array:
  """log p_{t_min}(x) in nats per example, [B] (module docstring). `settings` holds ode_solver,
  adaptive, rtol, atol, num_steps, max_ode_steps."""
  if process.discrete:
    raise ValueError(
      "The probability-flow likelihood needs a continuous process; ddpm uses the "
      "variational bound (eval.likelihood='vlb')."
    )
  divergence = divergence_fn(estimator, rng, x.shape)

  def augmented(t, state):
    y, _ = state
    drift = lambda z: probability_flow_drift(process, eps_fn, z, t)
    return drift(y), divergence(drift, y)

  zero = jnp.zeros((x.shape[0],), jnp.float32)
  grid = process.sampling_times(settings.num_steps)[::-1]
  x_end, integral = ode_solve(augmented, (x, zero), grid, settings)
  return process.prior_log_prob(x_end) + integral


def dequantize(x: jax.Array, rng: jax.Array, value_range: tuple[float, float]) -> jax.Array:
  """Pixels at the grey levels low + (high - low) k / 255 -> low + (high - low) (k + u) / 256."""
  low, high = value_range
  levels = jnp.round((x - low) / (high - low) * 255.0)
  return low + (high - low) * (levels + jax.random.uniform(rng, x.shape)) / 256.0


def bits_per_dim(
  log_likelihood: jax.Array, num_dims: int, value_range: tuple[float, float]
) -> jax.Array:
  """Dequantized-density log-likelihood (nats) -> discrete bits/dim (module docstring)."""
  low, high = value_range
  return -log_likelihood / (num_dims * LOG2) + 8.0 - math.log2(high - low)


def _normal_kl(mean1, log_var1, mean2, log_var2):
  return 0.5 * (
    log_var2
    - log_var1
    - 1.0
    + jnp.exp(log_var1 - log_var2)
    + (mean1 - mean2) ** 2 * jnp.exp(-log_var2)
  )


class DDPMBound:
  """The terms of the DDPM variational bound (nats, per example) for a DDPM process."""

  def __init__(self, process: DDPM, model_variance: str):
    betas, alpha_bars = process.betas, process.alpha_bars
    previous = np.append(1.0, alpha_bars[:-1])
    posterior_variance = betas * (1.0 - previous) / (1.0 - alpha_bars)
    if model_variance == "fixedlarge":
      variance = np.append(posterior_variance[1], betas[1:])
    elif model_variance == "fixedsmall":
      variance = np.append(posterior_variance[1], posterior_variance[1:])
    else:
      raise ValueError(
        f"Unknown diffusion.model_variance {model_variance!r}; use fixedlarge or fixedsmall."
      )
    as32 = lambda v: jnp.asarray(v, jnp.float32)
    self.process = process
    self.coef_x0 = as32(betas * np.sqrt(previous) / (1.0 - alpha_bars))
    self.coef_xt = as32((1.0 - previous) * np.sqrt(1.0 - betas) / (1.0 - alpha_bars))
    self.posterior_log_var = as32(np.log(np.append(posterior_variance[1], posterior_variance[1:])))
    self.model_log_var = as32(np.log(variance))

  def prior_term(self, x0: jax.Array) -> jax.Array:
    """KL(q(x_N | x_0) || N(0, I)), [B]."""
    last = self.process.num_timesteps - 1
    alpha, sigma = self.process.marginal(jnp.asarray(last))
    return _per_example_sum(_normal_kl(alpha * x0, jnp.log(sigma**2), 0.0, 0.0))

  def term(self, eps_fn: EpsFn, x0: jax.Array, t: jax.Array, rng: jax.Array) -> jax.Array:
    """L_t for indices t [B] >= 1 (KL term) or t = 0 (-log p(x_0 | x_1) decoder), [B]."""
    alpha, sigma = (broadcast_per_example(v, x0) for v in self.process.marginal(t))
    xt = alpha * x0 + sigma * jax.random.normal(rng, x0.shape)
    x0_hat = jnp.clip((xt - sigma * eps_fn(xt, t)) / alpha, -1.0, 1.0)
    coef_x0, coef_xt = (broadcast_per_example(c[t], x0) for c in (self.coef_x0, self.coef_xt))
    model_mean = coef_x0 * x0_hat + coef_xt * xt
    model_log_var = broadcast_per_example(self.model_log_var[t], x0)
    kl = _normal_kl(
      coef_x0 * x0 + coef_xt * xt,
      broadcast_per_example(self.posterior_log_var[t], x0),
      model_mean,
      model_log_var,
    )
    decoder = -discretized_gaussian_log_prob(x0, model_mean, 0.5 * model_log_var, (-1.0, 1.0))
    return _per_example_sum(jnp.where(broadcast_per_example(t, x0) == 0, decoder, kl))

  def total(
    self, eps_fn: EpsFn, x0: jax.Array, rng: jax.Array, num_timesteps: int
  ) -> dict[str, jax.Array]:
    """{'vlb': L, 'prior': L_N, 'decoder': L_0} in nats, [B] each (module docstring)."""
    steps = self.process.num_timesteps
    batch = x0.shape[0]
    decoder_rng, terms_rng, times_rng = jax.random.split(rng, 3)
    decoder = self.term(eps_fn, x0, jnp.zeros((batch,), jnp.int32), decoder_rng)
    if num_timesteps == 0:
      times = jnp.broadcast_to(jnp.arange(1, steps)[:, None], (steps - 1, batch))
      scale = 1.0
    else:
      times = jax.random.randint(times_rng, (num_timesteps, batch), 1, steps)
      scale = (steps - 1) / num_timesteps
    keys = jax.random.split(terms_rng, times.shape[0])
    terms = jax.lax.map(lambda inputs: self.term(eps_fn, x0, inputs[0], inputs[1]), (times, keys))
    prior = self.prior_term(x0)
    return {"vlb": prior + scale * terms.sum(axis=0) + decoder, "prior": prior, "decoder": decoder}
