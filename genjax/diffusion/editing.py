"""Controllable generation with a trained (unconditional or guided) denoiser.

classifier-free guidance  `guided_eps`: eps = (1 + w) eps(x, t, c) - w eps(x, t, none) (Ho &
    Salimans 2022), the "none" label being index num_classes (dropped labels in training).
inpainting  `inpaint`: the posterior (DDIM/ancestral) sampler where, after every step to time s,
    the known pixels (mask = 1) are replaced by a fresh forward sample alpha_s x_known + sigma_s z
    (Song et al. 2021b, appendix I.2, the replacement method); the output keeps x_known exactly
    where mask = 1. Replacement alone under-corrects the unknown pixels' conditional: with
    resample_steps = u > 1 every step is repeated u times, re-noising x_s to time t with the forward
    transition q(x_t | x_s) in between (RePaint, Lugmayr et al. 2022, with jumps of one step), which
    lets the unknown pixels follow the known ones; it costs u network evaluations per step.
editing (SDEdit)  `sdedit`: noise the given image to t_start = t_min + strength (t_max - t_min),
    x = alpha x_given + sigma z, then run the posterior sampler from t_start (Meng et al. 2022).
    strength -> 0 returns (nearly) the input, 1 a new sample. `denoise` starts SDEdit at the
    noise level of a noisy image instead of adding noise (the restore tool's sdedit denoiser).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax.diffusion.processes import Process
from genjax.diffusion.samplers import EpsFn, denoised, posterior_step

LabelledEpsFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]  # (x, t, labels) -> eps


def guided_eps(eps_fn: LabelledEpsFn, labels, null_labels, weight: float) -> EpsFn:
  """(x, t) -> (1 + w) eps(x, t, labels) - w eps(x, t, null_labels), both in one network call of 2B.

  labels: [B] class labels, or a pytree of [B, ...] arrays (text conditioning). null_labels: the
  same structure, each leaf either of its label's shape or broadcastable to it (a scalar null
  class index, a [1, ...] empty-prompt encoding)."""
  if weight == 0.0:
    return lambda x, t: eps_fn(x, t, labels)
  both_labels = jax.tree.map(
    lambda c, n: jnp.concatenate([c, jnp.broadcast_to(jnp.asarray(n, c.dtype), c.shape)]),
    labels,
    null_labels,
  )

  def guided(x, t):
    both = eps_fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]), both_labels)
    conditional, unconditional = jnp.split(both, 2)
    return (1.0 + weight) * conditional - weight * unconditional

  return guided


def _walk(
  process: Process, eps_fn: EpsFn, x: jax.Array, times: np.ndarray, eta: float, rng: jax.Array
) -> jax.Array:
  """Posterior steps along times (from times[0] down), then the final denoised estimate."""
  pairs = jnp.asarray(np.stack([times[:-1], times[1:]], axis=1))

  def step(x, inputs):
    (t, s), key = inputs
    return posterior_step(process, eps_fn, x, t, s, eta, key), None

  x, _ = jax.lax.scan(step, x, (pairs, jax.random.split(rng, len(pairs))))
  return denoised(process, eps_fn, x, jnp.asarray(times[-1]))[0]


def inpaint(
  process: Process,
  eps_fn: EpsFn,
  rng: jax.Array,
  x_known: jax.Array,
  mask: jax.Array,
  num_steps: int,
  eta: float = 1.0,
  resample_steps: int = 1,
) -> jax.Array:
  """Samples the pixels where mask == 0 given x_known where mask == 1; x_known, mask [B, ...].
  resample_steps >= 1 passes per step (RePaint; see the module docstring)."""
  if resample_steps < 1:
    raise ValueError(f"resample_steps must be >= 1 (1: plain replacement), got {resample_steps}.")
  prior_rng, rng = jax.random.split(rng)
  times = process.sampling_times(num_steps)
  pairs = jnp.asarray(np.stack([times[:-1], times[1:]], axis=1))

  def replace_known(x, s, key):
    alpha, sigma = process.marginal(s)
    noisy_known = alpha * x_known + sigma * jax.random.normal(key, x.shape, x.dtype)
    return mask * noisy_known + (1 - mask) * x

  def step(x, inputs):
    (t, s), key = inputs

    def denoise_and_replace(x, key):  # t -> s, then the known pixels at time s
      step_key, replace_key = jax.random.split(key)
      return replace_known(posterior_step(process, eps_fn, x, t, s, eta, step_key), s, replace_key)

    def renoise_and_repeat(x, key):  # s -> t with q(x_t | x_s), then t -> s again
      noise_key, step_key = jax.random.split(key)
      scale, variance = process.transition(t, s)
      x = scale * x + jnp.sqrt(variance) * jax.random.normal(noise_key, x.shape, x.dtype)
      return denoise_and_replace(x, step_key), None

    first_key, *repeat_keys = jax.random.split(key, resample_steps)
    x = denoise_and_replace(x, first_key)
    if repeat_keys:
      x, _ = jax.lax.scan(renoise_and_repeat, x, jnp.stack(repeat_keys))
    return x, None

  x = replace_known(
    process.prior_sample(prior_rng, x_known.shape), jnp.asarray(times[0]), prior_rng
  )
  x, _ = jax.lax.scan(step, x, (pairs, jax.random.split(rng, len(pairs))))
  x = denoised(process, eps_fn, x, jnp.asarray(times[-1]))[0]
  return mask * x_known + (1 - mask) * x


def sdedit(
  process: Process,
  eps_fn: EpsFn,
  rng: jax.Array,
  x_given: jax.Array,
  strength: float,
  num_steps: int,
  eta: float = 1.0,
) -> jax.Array:
  """Edits x_given [B, ...] by noising it to t_start (strength in (0, 1]) and denoising it back."""
  if not 0.0 < strength <= 1.0:
    raise ValueError(f"The SDEdit strength must lie in (0, 1], got {strength}.")
  t_start = process.t_min + strength * (process.t_max - process.t_min)
  noise_rng, rng = jax.random.split(rng)
  times = _times_from(process, t_start, num_steps)
  alpha, sigma = process.marginal(jnp.asarray(times[0]))
  x = alpha * x_given + sigma * jax.random.normal(noise_rng, x_given.shape, x_given.dtype)
  return _denoise_from(process, eps_fn, x, times, eta, rng)


def denoise(
  process: Process,
  eps_fn: EpsFn,
  rng: jax.Array,
  y: jax.Array,
  noise_sigma: float,
  num_steps: int,
  eta: float = 1.0,
) -> jax.Array:
  """Denoises y = x_0 + noise_sigma n [B, ...] by SDEdit started at y's own noise level: at the
  time t* with sigma(t*) / alpha(t*) = noise_sigma, alpha(t*) y = alpha x_0 + sigma n is already a
  sample of x_t* given x_0, so no noise is added; then the posterior sampler from t*."""
  if noise_sigma <= 0:
    raise ValueError(f"Denoising needs the noise level of the image (> 0), got {noise_sigma}.")
  with jax.ensure_compile_time_eval():
    if process.discrete:
      lambdas = np.asarray(process.log_snr(jnp.arange(process.num_timesteps)))
      t_start = int(np.abs(lambdas + np.log(noise_sigma)).argmin())
    else:
      lam = np.clip(-np.log(noise_sigma), *np.asarray(process.log_snr(jnp.asarray([process.t_max, process.t_min]))))
      t_start = float(process.t_from_lambda(jnp.asarray(lam, jnp.float32)))
  times = _times_from(process, t_start, num_steps)
  alpha = process.marginal(jnp.asarray(times[0]))[0]
  return _denoise_from(process, eps_fn, alpha * y, times, eta, rng)


def _times_from(process: Process, t_start: float, num_steps: int) -> np.ndarray:
  """t_start, then the times of the process's num_steps grid below it."""
  grid = process.sampling_times(num_steps)
  times = np.concatenate([[t_start], grid[grid < t_start]]).astype(grid.dtype)
  if process.discrete:
    times = np.unique(np.round(times).astype(np.int32))[::-1]
  return times


def _denoise_from(process, eps_fn, x, times, eta, rng):
  if len(times) == 1:
    return denoised(process, eps_fn, x, jnp.asarray(times[0]))[0]
  return _walk(process, eps_fn, x, times, eta, rng)
