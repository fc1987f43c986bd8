"""Samplers: pure functions sample(eps_fn, rng, shape) -> x_0, their loops in lax.scan.

eps_fn(x [B, ...], t [B]) -> eps_hat [B, ...] is the (guided, EMA) network; from it
x_0_hat = (x - sigma eps_hat) / alpha and score = -eps_hat / sigma. Every sampler starts from the
prior x_T ~ N(0, sigma(T)^2 I), walks the process's time grid t_0 = t_max > ... > t_{K-1} = t_min
(K = sampling.num_steps) and ends with the denoised x_0_hat at t_min (Tweedie's formula).

  ancestral   the DDPM posterior step q(x_s | x_t, x_0 = x_0_hat): Ho et al.'s sampler for ddpm
              with K = N, score_sde's ancestral predictor for ve; K network evaluations
  ddim        DDIM (Song et al. 2021a) with sampling.eta (0: deterministic, 1: ancestral);
              K evaluations
  pc          predictor-corrector (Song et al. 2021b): sampling.predictor 'euler_maruyama' or
              'reverse_diffusion', sampling.corrector_steps Langevin steps with sampling.snr
  ode         the probability-flow ODE with diffrax: sampling.ode_solver tsit5/dopri5 (adaptive,
              sampling.rtol/atol, or with sampling.adaptive=False fixed steps on the process's time
              grid of K points), euler/heun (fixed steps)
  heun        EDM Algorithm 2 (Karras et al. 2022) with churn (sampling.churn, churn_tmin/tmax,
              noise_scale) in the variance-exploding coordinates y = x / alpha,
              sigma = exp(-lambda); 2K - 1 evaluations
  dpm_solver  DPM-Solver++(2M) (Lu et al. 2022), data prediction, multistep, K times uniform in
              lambda; K evaluations
The samplers that need continuous time (pc, ode, heun) refuse the discrete ddpm process.

Every sampler starts at t_max of `process.truncated(sampling.lambda_min)`: the largest time with
lambda(t) = log(alpha / sigma) >= lambda_min (diffusers' lambda_min_clipped). The data prediction
x_0_hat = (x - sigma eps_hat) / alpha turns an eps error into an x_0_hat error e^{-lambda} times
larger, 2e4 at the cosine schedule's lambda(T) = -9.9 (its last beta is clipped at 0.999, so
alpha_bar_T = 2.4e-9); the default -5.1 (diffusers' value for the cosine schedule) drops its last
4 of 1000 timesteps and is below lambda(T) of the linear DDPM schedule (-5.06), the VP SDE (-5.03)
and every shipped config, which it leaves unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax.diffusion.processes import Process, broadcast_per_example
from genjax.registry import Registry

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]
Sampler = Callable[[EpsFn, jax.Array, tuple], jax.Array]
SAMPLERS: Registry[Callable[[Process, ml_collections.ConfigDict], Sampler]] = Registry("sampler")
CONTINUOUS_ONLY = ("pc", "ode", "heun")


def _batch_time(t: jax.Array, x: jax.Array) -> jax.Array:
  return jnp.full((x.shape[0],), t, jnp.asarray(t).dtype)


def denoised(
  process: Process, eps_fn: EpsFn, x: jax.Array, t: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """(x_0_hat, eps_hat) at the scalar time t."""
  eps = eps_fn(x, _batch_time(t, x))
  alpha, sigma = process.marginal(t)
  return (x - sigma * eps) / alpha, eps


def clipped_eps(process: Process, eps_fn: EpsFn, low: float, high: float) -> EpsFn:
  """eps_fn whose implied x_0_hat = (x - sigma eps) / alpha is clipped to [low, high] (Ho et al.'s
  clip_denoised, at every step of every sampler): eps' = (x - alpha clip(x_0_hat)) / sigma."""

  def eps(x: jax.Array, t: jax.Array) -> jax.Array:
    eps_hat = eps_fn(x, t)
    alpha, sigma = (broadcast_per_example(v, x) for v in process.marginal(t))
    x0 = jnp.clip((x - sigma * eps_hat) / alpha, low, high)
    return (x - alpha * x0) / sigma

  return eps


def make_sampler(name: str, process: Process, sampling: ml_collections.ConfigDict) -> Sampler:
  """The sampler `name` for `process` with the settings of the `sampling` config section."""
  factory = SAMPLERS.get(name)
  if name in CONTINUOUS_ONLY and process.discrete:
    raise ValueError(
      f"The {name} sampler needs a continuous-time process, but the ddpm process is discrete. Use "
      "sampling.sampler ancestral, ddim or dpm_solver with ddpm, or train with "
      "diffusion.process='vp'."
    )
  if sampling.num_steps < 2:
    raise ValueError(f"sampling.num_steps must be at least 2, got {sampling.num_steps}.")
  return factory(process.truncated(sampling.lambda_min), sampling)


def posterior_step(
  process: Process,
  eps_fn: EpsFn,
  x: jax.Array,
  t: jax.Array,
  s: jax.Array,
  eta: float,
  key: jax.Array,
) -> jax.Array:
  """One DDIM / ancestral step from time t to s < t: x_s = alpha_s x_0_hat + sqrt(sigma_s^2 - c^2)
  eps_hat + c z with c^2 = eta^2 sigma_s^2 v_ts / sigma_t^2, v_ts = sigma_t^2 - (alpha_t/alpha_s)^2
  sigma_s^2 (eta = 1: the DDPM posterior q(x_s | x_t, x_0 = x_0_hat))."""
  x0, eps = denoised(process, eps_fn, x, t)
  alpha_s, sigma_s = process.marginal(s)
  sigma_t = process.marginal(t)[1]
  _, v_ts = process.transition(t, s)
  c = eta * jnp.sqrt(sigma_s**2 * v_ts) / sigma_t
  direction = jnp.sqrt(jnp.maximum(sigma_s**2 - c**2, 0.0))
  return alpha_s * x0 + direction * eps + c * jax.random.normal(key, x.shape, x.dtype)


def _posterior_sampler(process: Process, times: np.ndarray, eta: float) -> Sampler:
  pairs = jnp.asarray(np.stack([times[:-1], times[1:]], axis=1))

  def sample(eps_fn: EpsFn, rng: jax.Array, shape: tuple) -> jax.Array:
    prior_rng, rng = jax.random.split(rng)
    x = process.prior_sample(prior_rng, shape)

    def step(x, inputs):
      (t, s), key = inputs
      return posterior_step(process, eps_fn, x, t, s, eta, key), None

    x, _ = jax.lax.scan(step, x, (pairs, jax.random.split(rng, len(pairs))))
    return denoised(process, eps_fn, x, jnp.asarray(times[-1]))[0]

  return sample


@SAMPLERS.register("ancestral")
def ancestral(process: Process, sampling: ml_collections.ConfigDict) -> Sampler:
  return _posterior_sampler(process, process.sampling_times(sampling.num_steps), 1.0)


@SAMPLERS.register("ddim")
def ddim(process: Process, sampling: ml_collections.ConfigDict) -> Sampler:
  if not 0.0 <= sampling.eta <= 1.0:
    raise ValueError(f"sampling.eta must lie in [0, 1], got {sampling.eta}.")
  return _posterior_sampler(process, process.sampling_times(sampling.num_steps), sampling.eta)


@SAMPLERS.register("pc")
def predictor_corrector(process: Process, sampling: ml_collections.ConfigDict) -> Sampler:
  """Per step at t (to the next time s): `corrector_steps` Langevin steps x += e score + sqrt(2e) z
  with e = 2 a (snr |z| / |score|)^2 (a = (alpha_t/alpha_s)^2, norms averaged over the batch as in
  score_sde),
  then the predictor: euler_maruyama x -= (f x - g^2 score)(t - s) - g sqrt(t - s) z, or
  reverse_diffusion x -= (a - 1) x - v_ts score - sqrt(v_ts) z with the exact transition (a,
  v_ts)."""
  predictor, corrector_steps, snr = sampling.predictor, sampling.corrector_steps, sampling.snr
  if predictor not in ("euler_maruyama", "reverse_diffusion"):
    raise ValueError(
      f"Unknown sampling.predictor {predictor!r}; use euler_maruyama or reverse_diffusion."
    )
  if corrector_steps < 0 or snr <= 0:
    raise ValueError("sampling.corrector_steps must be >= 0 and sampling.snr positive.")
  times = process.sampling_times(sampling.num_steps)
  pairs = np.stack([times[:-1], times[1:]], axis=1)

  def score(eps_fn, x, t):
    return -eps_fn(x, _batch_time(t, x)) / process.marginal(t)[1]

  def mean_norm(v):
    return jnp.mean(jnp.sqrt(jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1)))

  def sample(eps_fn: EpsFn, rng: jax.Array, shape: tuple) -> jax.Array:
    prior_rng, rng = jax.random.split(rng)
    x = process.prior_sample(prior_rng, shape)

    def step(x, inputs):
      (t, s), key = inputs
      keys = jax.random.split(key, corrector_steps + 1)
      ratio, v_ts = process.transition(t, s)
      for index in range(corrector_steps):
        grad = score(eps_fn, x, t)
        noise = jax.random.normal(keys[index], x.shape, x.dtype)
        grad_norm = mean_norm(grad)
        size = jnp.where(
          grad_norm > 0, 2 * ratio**2 * (snr * mean_norm(noise) / grad_norm) ** 2, 0.0
        )
        x = x + size * grad + jnp.sqrt(2 * size) * noise
      grad = score(eps_fn, x, t)
      noise = jax.random.normal(keys[-1], x.shape, x.dtype)
      if predictor == "euler_maruyama":
        f, g = process.sde(t)
        dt = t - s
        return x - (f * x - g**2 * grad) * dt + g * jnp.sqrt(dt) * noise, None
      return x - (ratio - 1) * x + v_ts * grad + jnp.sqrt(v_ts) * noise, None

    keys = jax.random.split(rng, len(pairs))
    x, _ = jax.lax.scan(step, x, (jnp.asarray(pairs), keys))
    return denoised(process, eps_fn, x, jnp.asarray(times[-1]))[0]

  return sample


ODE_SOLVERS = {
  "tsit5": diffrax.Tsit5,
  "dopri5": diffrax.Dopri5,
  "euler": diffrax.Euler,
  "heun": diffrax.Heun,
}


def ode_solve(
  drift: Callable[[jax.Array, jax.Array], jax.Array],
  y0,
  grid: np.ndarray,
  sampling: ml_collections.ConfigDict,
):
  """Integrates dy/dt = drift(t, y) from grid[0] to grid[-1] with diffrax (settings of the sampling
  section: ode_solver, adaptive with rtol, atol, max_ode_steps; else fixed steps on the grid)."""
  t0, t1 = float(grid[0]), float(grid[-1])
  if sampling.ode_solver not in ODE_SOLVERS:
    raise ValueError(
      f"Unknown sampling.ode_solver {sampling.ode_solver!r}. Valid: {', '.join(ODE_SOLVERS)}."
    )
  solver = ODE_SOLVERS[sampling.ode_solver]()
  adaptive = sampling.adaptive and sampling.ode_solver in ("tsit5", "dopri5")
  if sampling.adaptive and not adaptive:
    raise ValueError(
      f"The {sampling.ode_solver} ODE solver has fixed steps: set sampling.adaptive=False."
    )
  if adaptive:
    controller = diffrax.PIDController(rtol=sampling.rtol, atol=sampling.atol)
    dt0 = None
  else:
    controller = diffrax.StepTo(ts=jnp.asarray(grid))
    dt0 = None
  solution = diffrax.diffeqsolve(
    diffrax.ODETerm(lambda t, y, args: drift(t, y)),
    solver,
    t0=t0,
    t1=t1,
    dt0=dt0,
    y0=y0,
    stepsize_controller=controller,
    saveat=diffrax.SaveAt(t1=True),
    max_steps=sampling.max_ode_steps,
  )
  return jax.tree.map(lambda leaf: leaf[0], solution.ys)


def probability_flow_drift(
  process: Process, eps_fn: EpsFn, x: jax.Array, t: jax.Array
) -> jax.Array:
  """dx/dt = f(t) x - g(t)^2 / 2 score = f(t) x + g(t)^2 eps_hat / (2 sigma(t))."""
  f, g = process.sde(t)
  sigma = process.marginal(t)[1]
  return f * x + 0.5 * g**2 / sigma * eps_fn(x, _batch_time(t, x))


@SAMPLERS.register("ode")
def probability_flow_ode(process: Process, sampling: ml_collections.ConfigDict) -> Sampler:
  def sample(eps_fn: EpsFn, rng: jax.Array, shape: tuple) -> jax.Array:
    x = process.prior_sample(rng, shape)
    drift = lambda t, y: probability_flow_drift(process, eps_fn, y, t)
    x = ode_solve(drift, x, process.sampling_times(sampling.num_steps), sampling)
    return denoised(process, eps_fn, x, jnp.asarray(process.t_min, jnp.float32))[0]

  return sample


@SAMPLERS.register("heun")
def edm_heun(process: Process, sampling: ml_collections.ConfigDict) -> Sampler:
  """EDM Algorithm 2 on y = x / alpha with noise levels sigma_i = exp(-lambda(t_i)) and sigma_K = 0:
  gamma_i = min(churn / K, sqrt(2) - 1) for sigma_i in [churn_tmin, churn_tmax], else 0;
  sigma_hat = (1 + gamma) sigma_i, y_hat = y + sqrt(sigma_hat^2 - sigma_i^2) noise_scale z,
  d = (y_hat - D(y_hat, sigma_hat)) / sigma_hat, Euler to sigma_{i+1}, then the trapezoidal
  correction unless sigma_{i+1} = 0."""
  times = process.sampling_times(sampling.num_steps)
  sigmas = np.exp(-np.asarray(process.log_snr(jnp.asarray(times)), np.float64))
  num = len(sigmas)
  in_range = (sigmas >= sampling.churn_tmin) & (sigmas <= sampling.churn_tmax)
  gammas = np.where(in_range, min(sampling.churn / num, np.sqrt(2.0) - 1.0), 0.0)
  sigma_hats = sigmas * (1 + gammas)
  nexts = np.append(sigmas[1:], 0.0)
  churn_stds = np.sqrt(sigma_hats**2 - sigmas**2) * sampling.noise_scale
  schedule = np.stack([sigma_hats, churn_stds, nexts], axis=1).astype(np.float32)

  def denoise_ve(eps_fn, y, sigma_ve):
    t = process.t_from_lambda(-jnp.log(sigma_ve))
    alpha = process.marginal(t)[0]
    eps = eps_fn(alpha * y, _batch_time(t, y))
    return y - sigma_ve * eps  # D(y; sigma) = x_0_hat, so (y - D) / sigma = eps_hat

  def sample(eps_fn: EpsFn, rng: jax.Array, shape: tuple) -> jax.Array:
    prior_rng, rng = jax.random.split(rng)
    alpha_max = process.marginal(jnp.asarray(times[0]))[0]
    y = process.prior_sample(prior_rng, shape) / alpha_max

    def churn_and_euler(y, sigma_hat, churn_std, sigma_next, key):
      y_hat = y + churn_std * jax.random.normal(key, y.shape, y.dtype)
      slope = (y_hat - denoise_ve(eps_fn, y_hat, sigma_hat)) / sigma_hat
      return y_hat, slope, y_hat + (sigma_next - sigma_hat) * slope

    def step(y, inputs):
      (sigma_hat, churn_std, sigma_next), key = inputs
      y_hat, slope, y_euler = churn_and_euler(y, sigma_hat, churn_std, sigma_next, key)
      slope_next = (y_euler - denoise_ve(eps_fn, y_euler, sigma_next)) / sigma_next
      return y_hat + (sigma_next - sigma_hat) * 0.5 * (slope + slope_next), None

    keys = jax.random.split(rng, num)
    y, _ = jax.lax.scan(step, y, (jnp.asarray(schedule[:-1]), keys[:-1]))
    return churn_and_euler(y, *schedule[-1], keys[-1])[2]

  return sample


def log_snr_uniform_times(process: Process, num_steps: int) -> np.ndarray:
  """num_steps decreasing times from t_max to t_min, equally spaced in lambda = log(alpha /
  sigma)."""
  with jax.ensure_compile_time_eval():
    if process.discrete:
      process.sampling_times(num_steps)  # validates num_steps
      lambdas = np.asarray(process.log_snr(jnp.arange(process.t_max + 1)), np.float64)
      targets = np.linspace(lambdas[-1], lambdas[0], num_steps)
      indices = np.abs(lambdas[None, :] - targets[:, None]).argmin(axis=1)
      return np.unique(indices)[::-1].astype(np.int32)
    ends = np.asarray(process.log_snr(jnp.asarray([process.t_max, process.t_min], jnp.float32)))
    lambdas = jnp.linspace(ends[0], ends[1], num_steps)
    times = np.array(process.t_from_lambda(lambdas), np.float32)
  times[0], times[-1] = process.t_max, process.t_min
  return times


@SAMPLERS.register("dpm_solver")
def dpm_solver_2m(process: Process, sampling: ml_collections.ConfigDict) -> Sampler:
  """DPM-Solver++(2M): with lambda_i = log(alpha_i / sigma_i), h_i = lambda_{i+1} - lambda_i and
  r_i = h_{i-1} / h_i, x_{i+1} = (sigma_{i+1}/sigma_i) x_i - alpha_{i+1} (e^{-h_i} - 1) D_i, where
  D_0 = x_0_hat_0 and D_i = (1 + 1/(2 r_i)) x_0_hat_i - 1/(2 r_i) x_0_hat_{i-1}; the K times are
  uniform in lambda (Lu et al.'s logSNR spacing; for ddpm the nearest distinct indices)."""
  times = log_snr_uniform_times(process, sampling.num_steps)
  pairs = np.stack([times[:-1], times[1:]], axis=1)

  def sample(eps_fn: EpsFn, rng: jax.Array, shape: tuple) -> jax.Array:
    x = process.prior_sample(rng, shape)

    def step(carry, inputs):
      x, previous_x0, previous_h = carry
      index, (t, s) = inputs
      x0, _ = denoised(process, eps_fn, x, t)
      alpha_s, sigma_s = process.marginal(s)
      sigma_t = process.marginal(t)[1]
      h = process.log_snr(s) - process.log_snr(t)
      ratio = previous_h / h
      corrected = (1 + 0.5 / ratio) * x0 - (0.5 / ratio) * previous_x0
      data = jnp.where(index == 0, x0, corrected)
      x = sigma_s / sigma_t * x - alpha_s * jnp.expm1(-h) * data
      return (x, x0, h), None

    carry = (x, jnp.zeros_like(x), jnp.ones((), jnp.float32))
    inputs = (jnp.arange(len(pairs)), jnp.asarray(pairs))
    (x, _, _), _ = jax.lax.scan(step, carry, inputs)
    return denoised(process, eps_fn, x, jnp.asarray(times[-1]))[0]

  return sample


def network_evaluations(name: str, sampling: ml_collections.ConfigDict) -> int | None:
  """Network evaluations per sample for the fixed-step samplers (None for adaptive ODE solvers)."""
  steps = sampling.num_steps
  if name == "pc":
    return (steps - 1) * (sampling.corrector_steps + 1) + 1
  if name == "heun":
    return 2 * steps - 1
  if name == "ode":
    if sampling.adaptive:
      return None
    stages = {"euler": 1, "heun": 2, "tsit5": 6, "dopri5": 6}[sampling.ode_solver]
    return stages * (steps - 1) + 1
  return steps
