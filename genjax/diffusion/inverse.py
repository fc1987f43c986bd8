"""Linear inverse problems y = A x_0 + sigma_y n on an unconditional diffusion prior.

The measurement operators A (x [B, H, W, C] -> y) have a diagonal Gram matrix A A^T, so the
pseudo-inverse A^+ = A^T (A A^T)^+ is cheap and exact:
  Identity      denoising: y = x + sigma_y n, A A^T = I
  Mask(m)       inpainting: y = m * x (m = 1 on known pixels, y = 0 elsewhere), A A^T = diag(m)
  Downsample(s) super-resolution: y = the mean of each s x s block, y [B, H/s, W/s, C],
                A A^T = I / s^2, A^+ y = y repeated over each block (nearest upsampling)

Two solvers; both run the posterior (DDIM / ancestral) step of genjax.diffusion.samplers on the
process's time grid, with sigma_y in the units of x:
  ddnm   DDNM+ (Wang, Yu & Zhang 2023, "Zero-Shot Image Restoration Using Denoising Diffusion
         Null-Space Model"): each step replaces x_0_hat by its range-space correction
         x_0_hat + lambda_t A^+ (y - A x_0_hat) before stepping. lambda_t = 1 (exact
         consistency, A x_0 = y) while the step's own noise exceeds the measurement noise the
         correction carries in; below that it shrinks so that the two together have the step's
         noise level, and the fresh noise on the range of A^+ is reduced accordingly. One
         network evaluation per step, no gradients. For masks and downsampling; the noiseless
         result satisfies A x = y exactly. Its noise rule treats the carried noise as fresh at
         every step, but it is the same n each time, so it adds up: at sigma_y = 0.5 on a
         Gaussian prior the output lies 0.17 sigma_y (rms) from y, where exact posterior samples
         lie sigma_y from it (tests/test_inverse.py).
         Denoising therefore uses pigdm or sdedit.
  pigdm  Pseudoinverse-guided diffusion (Song, Vahdat, Mardani & Kautz 2023, ΠGDM): the score
         gains grad_x_t log N(y; A x_0_hat(x_t), sigma_y^2 I + r_t^2 A A^T), with
         r_t^2 = v sigma_t^2 / (alpha_t^2 v + sigma_t^2) the posterior variance of x_0 given x_t
         for data of variance v (restore.prior_variance; ΠGDM's v = 1). For an isotropic
         Gaussian prior N(mu, v I) this is the exact conditional score, so the sampler draws from
         the exact posterior p(x_0 | y) up to discretization (tests/test_inverse.py). Costs a
         vector-Jacobian product through the network per step (about 3 evaluations).
RePaint and SDEdit, the other two restorers, are genjax.diffusion.editing's inpaint and sdedit.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from genjax.diffusion.processes import Process, broadcast_per_example
from genjax.diffusion.samplers import EpsFn, denoised, posterior_step


@dataclasses.dataclass(frozen=True)
class Identity:
  """A = I (denoising)."""

  gram_value = 1.0  # the non-zero eigenvalue of A A^T

  def forward(self, x: jax.Array) -> jax.Array:
    return x

  def adjoint(self, y: jax.Array) -> jax.Array:
    return y

  def pseudo_inverse(self, y: jax.Array) -> jax.Array:
    return y


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Mask:
  """A = diag(mask), mask [B, H, W, C] (or broadcastable) with 1 on the known pixels, else 0."""

  mask: jax.Array
  gram_value = 1.0

  def forward(self, x: jax.Array) -> jax.Array:
    return self.mask * x

  def adjoint(self, y: jax.Array) -> jax.Array:
    return self.mask * y

  def pseudo_inverse(self, y: jax.Array) -> jax.Array:
    return self.mask * y


@dataclasses.dataclass(frozen=True)
class Downsample:
  """A = the mean over s x s blocks: [B, H, W, C] -> [B, H/s, W/s, C]."""

  factor: int

  @property
  def gram_value(self) -> float:
    return 1.0 / self.factor**2

  def forward(self, x: jax.Array) -> jax.Array:
    return block_mean(x, self.factor)

  def adjoint(self, y: jax.Array) -> jax.Array:
    return self.pseudo_inverse(y) / self.factor**2

  def pseudo_inverse(self, y: jax.Array) -> jax.Array:
    return jnp.repeat(jnp.repeat(y, self.factor, axis=1), self.factor, axis=2)


Operator = Identity | Mask | Downsample


def block_mean(x: jax.Array, factor: int) -> jax.Array:
  """[B, H, W, C] -> [B, H / factor, W / factor, C]: the mean of each factor x factor block
  (average pooling), the downsampling every super-resolver here undoes."""
  batch, height, width, channels = x.shape
  if height % factor or width % factor:
    raise ValueError(
      f"Cannot downsample {height}x{width} images by {factor}: height and width must be "
      f"divisible by the factor."
    )
  return x.reshape(batch, height // factor, factor, width // factor, factor, channels).mean(
    axis=(2, 4)
  )


def _step_pairs(process: Process, num_steps: int) -> tuple[np.ndarray, jax.Array]:
  times = process.sampling_times(num_steps)
  return times, jnp.asarray(np.stack([times[:-1], times[1:]], axis=1))


def _step_coefficients(process: Process, t: jax.Array, s: jax.Array, eta: float):
  """(a, b, c) of samplers.posterior_step written in x_0 and x_t: x_s = a x_0 + b x_t + c z."""
  alpha_t, sigma_t = process.marginal(t)
  alpha_s, sigma_s = process.marginal(s)
  _, v_ts = process.transition(t, s)
  c = eta * jnp.sqrt(sigma_s**2 * v_ts) / sigma_t
  b = jnp.sqrt(jnp.maximum(sigma_s**2 - c**2, 0.0)) / sigma_t
  return alpha_s - b * alpha_t, b, c


def ddnm(
  process: Process,
  eps_fn: EpsFn,
  rng: jax.Array,
  y: jax.Array,
  operator: Operator,
  noise_sigma: float,
  shape: tuple[int, ...],
  num_steps: int,
  eta: float = 0.85,
  value_range: tuple[float, float] | None = None,
) -> jax.Array:
  """DDNM+ samples x_0 [B, *shape] given y = A x_0 + noise_sigma n (module docstring).

  In orthonormal coordinates of A's row space the correction A^+ (y - A x_0) carries noise of std
  carried = noise_sigma / sqrt(gram) into x_0, i.e. a * carried into x_s; the step's own noise
  there has std c. So lambda = min(1, c / (a carried)) and the fresh noise on the row space is
  cut to sqrt(c^2 - (a lambda carried)^2); off it (A's null space) it stays c. eta: the posterior
  step's stochasticity (DDNM's 0.85; 1 = ancestral). The noiseless result has A x_0 = y exactly;
  with value_range (low, high) it is brought into that range by alternating projections onto the
  box and onto {x: A x = y} (POCS, 50 rounds, ending with the box), so that clipping the output
  does not undo its consistency."""
  times, pairs = _step_pairs(process, num_steps)
  carried = noise_sigma / np.sqrt(operator.gram_value)
  project = lambda v: operator.pseudo_inverse(operator.forward(v))  # onto A's row space

  def corrected(x0, strength):
    return x0 + strength * operator.pseudo_inverse(y - operator.forward(x0))

  def step(x, inputs):
    (t, s), key = inputs
    x0, _ = denoised(process, eps_fn, x, t)
    a, b, c = _step_coefficients(process, t, s, eta)
    strength = jnp.minimum(1.0, c / jnp.maximum(a * carried, 1e-12))
    row_noise = jnp.sqrt(jnp.maximum(c**2 - (a * strength * carried) ** 2, 0.0))
    z = jax.random.normal(key, x.shape, x.dtype)
    z_row = project(z)
    return a * corrected(x0, strength) + b * x + c * (z - z_row) + row_noise * z_row, None

  prior_rng, rng = jax.random.split(rng)
  x = process.prior_sample(prior_rng, (y.shape[0], *shape))
  x, _ = jax.lax.scan(step, x, (pairs, jax.random.split(rng, len(pairs))))
  x0, _ = denoised(process, eps_fn, x, jnp.asarray(times[-1]))
  if noise_sigma > 0:
    return x0
  x0 = corrected(x0, 1.0)
  if value_range is None:
    return x0
  both = lambda _, x: corrected(jnp.clip(x, *value_range), 1.0)
  return jnp.clip(jax.lax.fori_loop(0, 50, both, x0), *value_range)


def pigdm(
  process: Process,
  eps_fn: EpsFn,
  rng: jax.Array,
  y: jax.Array,
  operator: Operator,
  noise_sigma: float,
  shape: tuple[int, ...],
  num_steps: int,
  eta: float = 1.0,
  prior_variance: float = 1.0,
  guidance_scale: float = 1.0,
) -> jax.Array:
  """ΠGDM samples x_0 [B, *shape] given y = A x_0 + noise_sigma n (module docstring): posterior
  steps driven by eps_y = eps - guidance_scale sigma_t grad_x log p(y | x_t), where
  grad_x log p(y | x_t) = J^T A^T (y - A x_0_hat) / (noise_sigma^2 + r_t^2 gram), J = dx_0_hat/dx_t
  (a vector-Jacobian product), and the final x_0 is the guided estimate at t_min."""
  times, pairs = _step_pairs(process, num_steps)

  def guided_eps(x, t):
    alpha, sigma = (broadcast_per_example(v, x) for v in process.marginal(t))
    x0, pullback = jax.vjp(lambda x: (x - sigma * eps_fn(x, t)) / alpha, x)
    posterior_variance = prior_variance * sigma**2 / (alpha**2 * prior_variance + sigma**2)
    weight = 1.0 / (noise_sigma**2 + posterior_variance * operator.gram_value)
    (likelihood_score,) = pullback(operator.adjoint(weight * (y - operator.forward(x0))))
    return (x - alpha * x0) / sigma - guidance_scale * sigma * likelihood_score

  def step(x, inputs):
    (t, s), key = inputs
    return posterior_step(process, guided_eps, x, t, s, eta, key), None

  prior_rng, rng = jax.random.split(rng)
  x = process.prior_sample(prior_rng, (y.shape[0], *shape))
  x, _ = jax.lax.scan(step, x, (pairs, jax.random.split(rng, len(pairs))))
  return denoised(process, guided_eps, x, jnp.asarray(times[-1]))[0]
