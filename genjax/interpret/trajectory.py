"""A diffusion sampler seen step by step: x_t and x_0_hat over time, when the class is decided, and
interpolation through DDIM-inverted noise.

trajectory      the posterior (DDIM / ancestral) sampler of genjax.diffusion.samplers, from the
                prior at t_max down the process's time grid t_0 > ... > t_{K-1} = t_min, recording
                x_{t_k} and x_0_hat(x_{t_k}) = (x - sigma_k eps_hat) / alpha_k at the chosen steps
                k; step K-1 records the final x_t and the sample itself (x_0_hat at t_min).
decision_step   from the classes predicted on x_0_hat at every step: the fraction that already
                shows the final class, and the step from which 90% of the samples keep it.
ddim_invert     the deterministic DDIM map run forward (t_min -> t_max): x_0 -> x_T;
ddim_decode     and backward (the ddim sampler with eta = 0 from a given x_T): x_T -> x_0.
                One step from time u to v (either direction) is
                  x_v = alpha_v x_0_hat(x_u, u) + sigma_v eps_hat(x_u, u),
                so plain inversion reuses eps at the start of each step (Song et al. 2021a,
                section 4.3) and decode(invert(x_0)) misses x_0 by O(1 / num_steps); optional
                fixed-point corrections per step make each inverted step the exact preimage of
                the decoding step (as in iterative/fixed-point DDIM inversion).
inverted_interpolation  spherical interpolation (genjax.interpret.latents.slerp) between the
                inverted noises of two images, decoded (DDIM paper, section 5.4).

Tools (run on a restored diffusion run; the network with the sampling parameters):
  diffusion_trajectory     the trajectory figure; for MNIST-shaped images (28 or 32, 1 channel)
                           the MNIST classifier's class of x_0_hat at every step and step_90
  diffusion_interpolation  inverted interpolation between two test images (fixed-point
                           inversion), and the invert -> decode error of those two images
Class-conditional runs walk with the null label when they were trained with label dropout (the
model's unconditional eps); otherwise with the labels the family samples with (trajectory) or the
images' own label (interpolation, between two images of one class).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from genjax import images
from genjax.diffusion.processes import Process
from genjax.diffusion.samplers import EpsFn, denoised, posterior_step
from genjax.evaluation.extractors import MnistExtractor
from genjax.input_pipeline import eval_batches
from genjax.interpret import TOOLS, NotApplicable, Tool, ToolResult
from genjax.interpret.latents import slerp

DECIDED_FRACTION = 0.9  # decision_step's share of samples that must have settled on their class
TRAJECTORY_SAMPLES = 64  # samples the diffusion_trajectory tool draws (classes from all of them)
SHOWN_SAMPLES = 4  # of which the trajectory figure shows the first few
SHOWN_STEPS = 8  # at this many steps, evenly spaced from t_max to t_min
INTERPOLATION_POINTS = 8  # decoded points of the interpolation, its two ends included
INVERSION_ITERATIONS = 2  # the interpolation tool's fixed-point corrections per inversion step


# --- the math ---------------------------------------------------------------------------------


def _recorded_walk(
  process: Process,
  eps_fn: EpsFn,
  x: jax.Array,
  times: np.ndarray,
  eta: float,
  rng: jax.Array,
  record: np.ndarray,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Posterior steps from x [B, ...] at times[0] down to times[-1], then x_0_hat there; returns
  (x_t [R, B, ...], x_0_hat [R, B, ...], x_0 [B, ...]) at the step indices `record` [R] (distinct,
  into times). The random keys are those of samplers._posterior_sampler, so x_0 is its output."""
  slots = np.full(len(times), len(record), np.int32)  # slot R: not recorded (dropped)
  slots[record] = np.arange(len(record))
  pairs = jnp.asarray(np.stack([times[:-1], times[1:]], axis=1))
  buffers = jnp.zeros((2, len(record), *x.shape), x.dtype)

  def save(buffers, slot, x, x0):
    return buffers.at[:, slot].set(jnp.stack([x, x0]), mode="drop")

  def step(carry, inputs):
    x, buffers = carry
    (t, s), slot, key = inputs
    x0, eps = denoised(process, eps_fn, x, t)
    # posterior_step re-derives x_0_hat from this eps: one network evaluation per step.
    x_next = posterior_step(process, lambda *_: eps, x, t, s, eta, key)
    return (x_next, save(buffers, slot, x, x0)), None

  inputs = (pairs, jnp.asarray(slots[:-1]), jax.random.split(rng, len(pairs)))
  (x, buffers), _ = jax.lax.scan(step, (x, buffers), inputs)
  x0 = denoised(process, eps_fn, x, jnp.asarray(times[-1]))[0]
  buffers = save(buffers, slots[-1], x, x0)
  return buffers[0], buffers[1], x0


def _step_indices(record: Sequence[int] | None, num_steps: int) -> np.ndarray:
  """record (Python-style indices into the num_steps steps; None: all) as distinct indices."""
  every = np.arange(num_steps)
  if record is None:
    return every
  try:
    indices = every[np.asarray(record, np.int64)]
  except IndexError:
    raise ValueError(f"record={list(record)} holds steps outside 0..{num_steps - 1}.") from None
  if len(np.unique(indices)) != len(indices):
    raise ValueError(f"record={list(record)} names a step twice.")
  return indices


def trajectory(
  process: Process,
  eps_fn: EpsFn,
  rng: jax.Array,
  shape: tuple[int, ...],
  num_steps: int,
  eta: float,
  record: Sequence[int] | None = None,
) -> tuple[np.ndarray, jax.Array, jax.Array, jax.Array]:
  """The ddim sampler (samplers.ddim with num_steps and eta; eta = 1 is ancestral) for a batch of
  `shape` = (B, ...), watched at the steps `record` (indices k into the K = num_steps times
  t_k = process.sampling_times(K)[k]; None: all K).

  Returns (times [R], x_t [R, B, ...], x_0_hat [R, B, ...], x_0 [B, ...]): at step k < K-1 the
  state x_{t_k} before the step and x_0_hat = (x_{t_k} - sigma eps_hat) / alpha; at k = K-1 the
  last state and the sample x_0 itself. x_0 equals make_sampler("ddim", ...)'s output for the
  same rng (the same keys). Jit it with everything but eps_fn's parameters and rng static.
  """
  if not 0.0 <= eta <= 1.0:
    raise ValueError(f"eta must lie in [0, 1], got {eta}.")
  times = process.sampling_times(num_steps)
  record = _step_indices(record, len(times))
  prior_rng, rng = jax.random.split(rng)
  x = process.prior_sample(prior_rng, shape)
  x_t, x0_hat, x0 = _recorded_walk(process, eps_fn, x, times, eta, rng, record)
  return times[record], x_t, x0_hat, x0


def _settling_steps(classes: np.ndarray) -> np.ndarray:
  """classes [K, B] -> [B]: per sample the first step k whose class, and every later one, is the
  final class classes[-1] (0: decided from the start; K-1: only at the end)."""
  agrees = classes == classes[-1]
  settled = np.flip(np.cumprod(np.flip(agrees, 0), 0), 0).astype(bool)  # all agree from k on
  return len(classes) - settled.sum(0)


def decision_step(predicted_classes: np.ndarray) -> tuple[np.ndarray, int]:
  """When the sampler decides the class, from predicted_classes [K, B] (the class of x_0_hat at
  each of K steps, the last being the sample's own class).

  Returns fraction_final [K], the fraction of the B samples whose class at step k is already their
  final class, and step_90: with s_b the first step from which sample b's class never changes
  again (so s_b = K-1 when it changes at the last step), the smallest step k with
  #{b : s_b <= k} >= 0.9 B -- from step_90 on, at least 90% of the samples show their final class
  and keep it to the end (the 90th percentile of s_b, inverted-CDF definition). A sample that
  flips away and back counts from its last return, so fraction_final may cross 0.9 earlier.
  """
  classes = np.asarray(predicted_classes)
  if classes.ndim != 2 or classes.shape[0] < 1 or classes.shape[1] < 1:
    raise ValueError(f"predicted_classes must be [K, B] with K, B >= 1, got {classes.shape}.")
  fraction_final = np.mean(classes == classes[-1], axis=1)
  steps = np.sort(_settling_steps(classes))
  needed = int(np.ceil(DECIDED_FRACTION * len(steps) - 1e-9))  # samples that must have settled
  return fraction_final, int(steps[max(needed, 1) - 1])


def _ddim_walk(
  process: Process, eps_fn: EpsFn, x: jax.Array, times: np.ndarray, fixed_point_iterations: int = 0
) -> jax.Array:
  """Deterministic DDIM along times (rising or falling): from (x_u, u) to v,
  x_v = alpha_v x_0_hat + sigma_v eps_hat, both evaluated at (x_u, u). Each step is then corrected
  `fixed_point_iterations` times by x_v <- (alpha_v / alpha_u) (x_u - sigma_u e) + sigma_v e with
  e = eps_hat(x_v, v), whose fixed point is the x_v that the DDIM step back from v lands on x_u
  exactly (for inversion; each iteration costs one more network evaluation)."""
  pairs = jnp.asarray(np.stack([times[:-1], times[1:]], axis=1))

  def step(x, pair):
    u, v = pair
    x0, eps = denoised(process, eps_fn, x, u)
    (alpha_u, sigma_u), (alpha_v, sigma_v) = process.marginal(u), process.marginal(v)
    x_v = alpha_v * x0 + sigma_v * eps

    def correct(_, x_v):
      eps = denoised(process, eps_fn, x_v, v)[1]
      return alpha_v / alpha_u * (x - sigma_u * eps) + sigma_v * eps

    if fixed_point_iterations:  # a loop (not unrolled): one network in the compiled program
      x_v = jax.lax.fori_loop(0, fixed_point_iterations, correct, x_v)
    return x_v, None

  return jax.lax.scan(step, x, pairs)[0]


def ddim_invert(
  process: Process, eps_fn: EpsFn, x0: jax.Array, num_steps: int, fixed_point_iterations: int = 0
) -> jax.Array:
  """x_0 [B, ...] -> x_T [B, ...], deterministic DDIM up the grid process.sampling_times(num_steps)
  reversed (t_min -> t_max). The start x_{t_min} takes 1 + fixed_point_iterations steps of
  x <- alpha x_0 + sigma eps_hat(x, t_min) from x = alpha x_0, towards the x whose x_0_hat at t_min
  (where ddim_decode ends) is x_0.

  With fixed_point_iterations = 0 this is plain DDIM inversion, whose decode(invert(x_0)) error
  falls as 1 / num_steps (eps is taken at the start of each step, not at its end); n > 0 corrects
  every step n times (see _ddim_walk), which on the exact Gaussian eps takes that error from 1e-2
  to 1e-5 at 1000 steps, for (1 + n) network evaluations per step.
  """
  if fixed_point_iterations < 0:
    raise ValueError(f"fixed_point_iterations must be >= 0, got {fixed_point_iterations}.")
  times = process.sampling_times(num_steps)[::-1]
  t_min = jnp.asarray(times[0])
  alpha, sigma = process.marginal(t_min)
  start = lambda _, x: alpha * x0 + sigma * denoised(process, eps_fn, x, t_min)[1]
  x = jax.lax.fori_loop(0, 1 + fixed_point_iterations, start, alpha * x0)
  return _ddim_walk(process, eps_fn, x, times, fixed_point_iterations)


def ddim_decode(process: Process, eps_fn: EpsFn, x_T: jax.Array, num_steps: int) -> jax.Array:
  """x_T [B, ...] -> x_0 [B, ...]: the ddim sampler with eta = 0 started from x_T (down the same
  grid as ddim_invert), ending with x_0_hat at t_min; decode(invert(x_0)) ~= x_0."""
  times = process.sampling_times(num_steps)
  x = _ddim_walk(process, eps_fn, x_T, times)
  return denoised(process, eps_fn, x, jnp.asarray(times[-1]))[0]


def inverted_interpolation(
  process: Process,
  eps_fn: EpsFn,
  x0_a: jax.Array,
  x0_b: jax.Array,
  num: int,
  num_steps: int,
  fixed_point_iterations: int = 0,
) -> jax.Array:
  """Two examples x0_a, x0_b [...] -> [num, ...]: both DDIM-inverted to x_T (ddim_invert with
  fixed_point_iterations), the noises joined by `num` (>= 2) evenly spaced points of their great
  circle (slerp; the ends are the inversions themselves), each decoded. The ends are
  decode(invert(x0_a)) and decode(invert(x0_b))."""
  if num < 2:
    raise ValueError(f"An interpolation needs num >= 2 points, got {num}.")
  pair = jnp.stack([x0_a, x0_b])
  noise = ddim_invert(process, eps_fn, pair, num_steps, fixed_point_iterations)
  path = slerp(noise[0].ravel(), noise[1].ravel(), jnp.linspace(0.0, 1.0, num))
  return ddim_decode(process, eps_fn, path.reshape(num, *x0_a.shape), num_steps)


# --- the tools --------------------------------------------------------------------------------


def unconditional_eps(family, params, labels: int | jax.Array = 0) -> EpsFn:
  """(x [B, ...], t [B]) -> eps_hat of a DiffusionFamily's network with `params` (clipped as the
  family samples). Class-conditional models trained with label dropout get the null label (their
  unconditional eps); others get `labels` (an int, or [B]) broadcast over the batch."""
  if not family.num_classes:
    return family.eps_fn(params)
  if family.config.diffusion.label_dropout > 0:
    labels = family.num_classes

  def eps(x: jax.Array, t: jax.Array) -> jax.Array:
    batch_labels = jnp.broadcast_to(jnp.asarray(labels, jnp.int32), (x.shape[0],))
    return family.eps_fn(params, batch_labels)(x, t)

  return eps


def _walk_eta(sampling) -> float:
  """The run's ddim eta when it samples with ddim, else 1 (ancestral)."""
  return float(sampling.eta) if sampling.sampler == "ddim" else 1.0


def _is_digit_shaped(shape: tuple[int, ...]) -> bool:
  return tuple(shape) in ((28, 28, 1), (32, 32, 1))


def _picture(rows: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
  """rows [R, C, H, W, ch] in value_range -> one picture [H', W', ch] on [0, 1], row by row."""
  count, columns = rows.shape[:2]
  flat = np.clip(
    images.to_unit_range(rows.reshape(count * columns, *rows.shape[2:]), value_range), 0.0, 1.0
  )
  return images.make_grid(flat, columns).astype(np.float32) / 255.0


def _show(axis, picture: np.ndarray, cell: int, row_labels, column_labels) -> None:
  """imshow of a make_grid picture (padding 2, cells of `cell` pixels) with its rows and columns
  labelled at the cell centres."""
  axis.imshow(picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1)
  centres = lambda count: 2 + (cell + 2) * np.arange(count) + cell / 2
  axis.set_xticks(centres(len(column_labels)), column_labels, fontsize=7)
  axis.set_yticks(centres(len(row_labels)), row_labels, fontsize=7)
  axis.tick_params(length=0)


def trajectory_figure(
  times: np.ndarray, x_t: np.ndarray, x0_hat: np.ndarray, alphas_sigmas, value_range
) -> Figure:
  """Rows: per sample its x_t (scaled by 1 / sqrt(alpha^2 + sigma^2), the data's range at unit
  signal-plus-noise variance) and below it x_0_hat; columns: the steps, times [S]. x_t, x0_hat
  [S, N, H, W, C]."""
  alpha, sigma = (np.asarray(v).reshape(-1, 1, 1, 1, 1) for v in alphas_sigmas)
  scaled = x_t / np.sqrt(alpha**2 + sigma**2)
  rows = np.stack([scaled, x0_hat], axis=2)  # [S, N, 2, ...]
  rows = np.moveaxis(rows, 0, 2).reshape(-1, len(times), *x_t.shape[2:])  # [2N, S, ...]
  picture = _picture(rows, value_range)
  figure = Figure(figsize=(1.0 + 0.9 * len(times), 0.5 + 0.9 * len(rows)))
  axis = figure.subplots()
  labels = [f"{name} {index}" for index in range(x_t.shape[1]) for name in ("x_t", "x0_hat")]
  _show(axis, picture, x_t.shape[2], labels, [f"t={float(t):.3g}" for t in times])
  axis.set_title("Sampler trajectory: x_t (scaled) and x_0_hat per step", fontsize=9)
  return figure


def decision_figure(times: np.ndarray, classes: np.ndarray, step_90: int) -> Figure:
  """The fraction of samples whose class (of x_0_hat) is already the final one, and the fraction
  settled on it for good, against the step; step_90 marked. classes [K, B], times [K]."""
  fraction_final, _ = decision_step(classes)
  settling = _settling_steps(classes)
  steps = np.arange(len(classes))
  settled = np.mean(settling[None, :] <= steps[:, None], axis=1)
  figure = Figure(figsize=(6, 3.5))
  axis = figure.subplots()
  axis.plot(steps, fraction_final, marker=".", label="class of x_0_hat = final class")
  axis.plot(steps, settled, linestyle="--", label="settled: final class from here on")
  axis.axhline(DECIDED_FRACTION, color="gray", linewidth=0.8)
  axis.axvline(
    step_90,
    color="red",
    linewidth=1.0,
    label=f"step_90 = {step_90} (t = {float(times[step_90]):.3g})",
  )
  axis.set_xlabel(f"sampler step (t from {float(times[0]):.3g} down to {float(times[-1]):.3g})")
  axis.set_ylabel(f"fraction of {classes.shape[1]} samples")
  axis.set_ylim(-0.02, 1.02)
  axis.legend(fontsize=8)
  axis.set_title("When the sampler decides the digit (MNIST classifier on x_0_hat)", fontsize=9)
  return figure


def _run_trajectory(experiment, state, rng: jax.Array) -> ToolResult:
  family, config = experiment.family, experiment.config
  if not family.info.is_image:
    raise NotApplicable("diffusion_trajectory draws images; this run's data are points.")
  process, sampling = family.sampling_process, config.sampling
  params = experiment.sample_params(state)
  num_steps, eta = sampling.num_steps, _walk_eta(sampling)
  shape = (TRAJECTORY_SAMPLES, *family.example_shape)
  label_rng, rng = jax.random.split(rng)
  labels = family.sample_labels(label_rng, TRAJECTORY_SAMPLES)
  labels = 0 if labels is None else labels

  @jax.jit
  def walk(params, rng):
    eps = unconditional_eps(family, params, labels)
    return trajectory(process, eps, rng, shape, num_steps, eta)

  times, x_t, x0_hat, _ = jax.device_get(walk(params, rng))
  value_range = tuple(config.data.value_range)
  x0_hat = np.clip(x0_hat, *value_range)
  summary = {"num_steps": num_steps, "eta": eta, "num_samples": TRAJECTORY_SAMPLES}
  shown = np.unique(np.round(np.linspace(0, num_steps - 1, min(SHOWN_STEPS, num_steps))))
  shown = shown.astype(int)
  marginals = jax.device_get(process.marginal(jnp.asarray(times[shown])))
  figures = {
    "trajectory": trajectory_figure(
      times[shown],
      x_t[shown, :SHOWN_SAMPLES],
      x0_hat[shown, :SHOWN_SAMPLES],
      marginals,
      value_range,
    )
  }
  if not _is_digit_shaped(family.example_shape):
    summary["class_decision"] = (
      f"skipped: the MNIST classifier takes [28|32, 28|32, 1] digits, not {family.example_shape}"
    )
    return ToolResult(figures, summary)

  extractor = MnistExtractor.load()
  classify = jax.jit(
    lambda variables, x: jnp.argmax(extractor.apply(variables, x, value_range)[1], axis=-1)
  )
  classes = np.stack([np.asarray(classify(extractor.variables, step)) for step in x0_hat])
  fraction_final, step_90 = decision_step(classes)  # classes [K, B]
  figures["class_decision"] = decision_figure(times, classes, step_90)
  summary.update(
    step_90=step_90,
    t_90=float(times[step_90]),
    fraction_final_at_half=float(fraction_final[num_steps // 2]),
    final_class_counts=np.bincount(classes[-1], minlength=extractor.num_classes).tolist(),
  )
  return ToolResult(figures, summary)


def _test_pair(batch: dict[str, np.ndarray], same_class: bool) -> tuple[int, int]:
  """Indices (a, b) of two images of the batch: the first, and the next of another class (of the
  same class when `same_class`; the second image when the data have no labels)."""
  if "label" not in batch:
    return 0, 1
  labels = batch["label"][batch["mask"] > 0]
  matches = np.flatnonzero((labels == labels[0]) == same_class)
  matches = matches[matches > 0]
  return 0, int(matches[0]) if len(matches) else 1


def interpolation_figure(ends: np.ndarray, strip: np.ndarray, value_range) -> Figure:
  """One row: test image a, the decoded points of the interpolation strip [N, H, W, C] (its ends
  are a's and b's invert -> decode reconstructions), test image b. ends [2, H, W, C]."""
  num = len(strip)
  row = np.concatenate([ends[:1], strip, ends[1:]])[None]
  figure = Figure(figsize=(1.0 + 0.9 * (num + 2), 1.9))
  axis = figure.subplots()
  columns = ["image a"] + [f"{index / (num - 1):.2f}" for index in range(num)] + ["image b"]
  _show(axis, _picture(row, value_range), strip.shape[1], ["slerp"], columns)
  axis.set_title(
    "Interpolation through DDIM-inverted noise (ends: decode(invert(image)))", fontsize=9
  )
  return figure


def _run_interpolation(experiment, state, rng: jax.Array) -> ToolResult:
  family, config = experiment.family, experiment.config
  if not family.info.is_image:
    raise NotApplicable("diffusion_interpolation interpolates images; this run's data are points.")
  process, num_steps = family.sampling_process, config.sampling.num_steps
  params = experiment.sample_params(state)
  batches = eval_batches(
    config.data, 64, num_examples=64, data_seed=config.seed, noise_seed=config.eval.seed
  )
  batch = next(iter(batches))
  # A conditional model without a null label walks with image a's label: b must share it.
  same_class = bool(family.num_classes) and config.diffusion.label_dropout <= 0
  a, b = _test_pair(batch, same_class)
  label = int(batch["label"][a]) if "label" in batch else 0

  @jax.jit
  def interpolate(params, x_a, x_b):
    eps = unconditional_eps(family, params, label)
    return inverted_interpolation(
      process, eps, x_a, x_b, INTERPOLATION_POINTS, num_steps, INVERSION_ITERATIONS
    )

  ends = batch["x"][[a, b]]
  strip = np.asarray(interpolate(params, ends[0], ends[1]))
  errors = (strip[[0, -1]] - ends).reshape(2, -1)
  value_range = tuple(config.data.value_range)
  summary = {
    "num_steps": num_steps,
    "fixed_point_iterations": INVERSION_ITERATIONS,
    "reconstruction_rmse": float(np.sqrt(np.mean(errors**2))),
    "reconstruction_max_abs": float(np.abs(errors).max()),
    "error_units": f"data.value_range {value_range}, over images a and b",
    "test_indices": [a, b],
  }
  return ToolResult({"interpolation": interpolation_figure(ends, strip, value_range)}, summary)


TOOLS.register("diffusion_trajectory")(
  Tool(
    families=("diffusion",),
    description="x_t and x_0_hat along the ddim/ancestral sampler; for MNIST digits, the step from "
    "which 90% of the samples keep the class the MNIST classifier gives their final image",
    run=_run_trajectory,
  )
)
TOOLS.register("diffusion_interpolation")(
  Tool(
    families=("diffusion",),
    description="slerp between the DDIM-inverted noises of two test images, decoded; the invert -> "
    "decode reconstruction error of those two images",
    run=_run_interpolation,
  )
)
