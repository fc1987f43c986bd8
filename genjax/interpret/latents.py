"""Latent-space tools: VAE traversals ranked by KL, GANSpace directions, interpolations.

Pure math (arrays and callables; tests/test_interpret_latents.py checks it on a linear decoder):
  traverse(decode, center [D], directions [K, D], offsets [S]) -> decode(center + s v_k) [K, S, ...]
  vae_kl_per_dimension(mean, log_std) [N, D] -> [D]: (1/N) sum_n KL(q(z_d|x_n) || N(0, 1)) in nats,
    KL = (m^2 + s^2 - 1) / 2 - log s; ranked_dimensions(kl) orders the dimensions by it.
  principal_directions(codes [N, D], k) -> (unit directions [k, D], explained variance ratio [k],
    mean [D]): PCA, as GANSpace (Härkönen et al. 2020) does on a generator's codes.
  regress_to_latents: GANSpace's map of activation-space components back to the input latents.
  lerp / slerp / interpolate: paths between two latents; slerp (White 2016) keeps a path between
    two Gaussian latents at their typical radius.

Tools (genjax.interpret.TOOLS), on a restored run:
  vae_traversal         top-KL latent dimensions of a VAE, traversed around a test image's code
                        (spatial latents [h, w, c] are flattened: dimension d is element d of z's
                        row-major order)
  gan_directions        GANSpace directions: of w for StyleGAN2, of G's first layer for "gan"
  latent_interpolation  slerp in z (VAE prior, GAN z), lerp in StyleGAN2's W
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from genjax.images import make_grid, to_unit_range
from genjax.input_pipeline import eval_batches
from genjax.interpret import TOOLS, NotApplicable, Tool, ToolResult

ACTIVE_KL_NATS = 0.01  # a dimension whose average KL is above this carries information
TRAVERSAL_OFFSETS = tuple(np.linspace(-3.0, 3.0, 7).tolist())
NUM_TRAVERSED = 8  # latent dimensions or directions shown
NUM_KL_IMAGES = 256  # test images the KL ranking averages over
NUM_GANSPACE_CODES = 2048  # sampled latents the principal directions are fitted on
INTERPOLATION_ROWS = 4
INTERPOLATION_STEPS = 8


# --- pure math ------------------------------------------------------------------------------------


def traverse(
  decode: Callable[[jax.Array], jax.Array],
  center: jax.Array,
  directions: jax.Array,
  offsets: jax.Array,
) -> jax.Array:
  """decode(center + offsets[s] * directions[k]) for every k, s: [K, S, *decode's output shape].

  decode maps codes [B, D] to images [B, H, W, C]; center [D]; directions [K, D] (one-hot rows
  traverse single coordinates); offsets [S]. All K * S codes are decoded in one batch."""
  offsets = jnp.asarray(offsets, center.dtype)
  codes = center + offsets[None, :, None] * directions[:, None, :]  # [K, S, D]
  num_directions, num_offsets = codes.shape[:2]
  images = decode(codes.reshape(num_directions * num_offsets, -1))
  return images.reshape(num_directions, num_offsets, *images.shape[1:])


@jax.jit
def vae_kl_per_dimension(mean: jax.Array, log_std: jax.Array) -> jax.Array:
  """[D]: the average over N images of KL(N(m_nd, s_nd^2) || N(0, 1)) = (m^2 + s^2 - 1)/2 - log s
  in nats, from q(z|x)'s mean and log_std [N, D]. Summed over d it is the VAE's KL term."""
  per_image = 0.5 * (mean**2 + jnp.exp(2.0 * log_std) - 1.0) - log_std
  return per_image.mean(axis=0)


def ranked_dimensions(kl: jax.Array) -> np.ndarray:
  """The dimension indices [D] by descending KL (ties keep index order)."""
  return np.argsort(-np.asarray(kl), kind="stable")


@functools.partial(jax.jit, static_argnames="k")
def principal_directions(codes: jax.Array, k: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """PCA of codes [N, D]: (directions [k, D], explained_variance_ratio [k], mean [D]).

  directions are the top-k eigenvectors of the sample covariance (unit rows, by descending
  variance; each signed so its largest-magnitude entry is positive); the ratio is each one's
  variance over the total variance."""
  mean = codes.mean(axis=0)
  _, singular, vt = jnp.linalg.svd(codes - mean, full_matrices=False)
  variance = singular**2
  directions = vt[:k]
  largest = jnp.take_along_axis(directions, jnp.argmax(jnp.abs(directions), axis=1)[:, None], 1)
  directions = directions * jnp.sign(largest)
  return directions, variance[:k] / variance.sum(), mean


@jax.jit
def regress_to_latents(
  latents: jax.Array, activations: jax.Array, directions: jax.Array, mean: jax.Array
) -> jax.Array:
  """GANSpace's transfer of activation-space components to the latent space: [k, Dz] unit rows.

  latents z [N, Dz] produced activations y [N, A]; with the components' coordinates
  c = (y - mean) directions^T [N, k], U = argmin_U sum_n ||c_n U - z_n||^2 (least squares), and
  row i of U (normalised) is the z direction that moves component i."""
  coordinates = (activations - mean) @ directions.T
  rows, *_ = jnp.linalg.lstsq(coordinates, latents)
  return rows / jnp.linalg.norm(rows, axis=1, keepdims=True)


def lerp(z0: jax.Array, z1: jax.Array, ts: jax.Array) -> jax.Array:
  """(1 - t) z0 + t z1 for z0, z1 [..., D] and ts [T]: [..., T, D]."""
  ts = jnp.asarray(ts, z0.dtype)[:, None]
  return z0[..., None, :] * (1.0 - ts) + z1[..., None, :] * ts


def slerp(z0: jax.Array, z1: jax.Array, ts: jax.Array) -> jax.Array:
  """Spherical interpolation [..., T, D] of z0, z1 [..., D] at ts [T]:
  (sin((1 - t) w) z0 + sin(t w) z1) / sin(w), w the angle between z0 and z1. Endpoints are exact;
  for |z0| = |z1| every point has that norm. (Anti)parallel pairs (sin w < 1e-6) fall back to lerp."""
  ts = jnp.asarray(ts, z0.dtype)[:, None]
  norms = jnp.linalg.norm(z0, axis=-1) * jnp.linalg.norm(z1, axis=-1)
  cosine = jnp.clip(jnp.sum(z0 * z1, axis=-1) / jnp.maximum(norms, 1e-30), -1.0, 1.0)
  omega = jnp.arccos(cosine)[..., None, None]  # [..., 1, 1]
  sin_omega = jnp.sin(omega)
  degenerate = sin_omega < 1e-6
  safe = jnp.where(degenerate, 1.0, sin_omega)
  w0 = jnp.where(degenerate, 1.0 - ts, jnp.sin((1.0 - ts) * omega) / safe)
  w1 = jnp.where(degenerate, ts, jnp.sin(ts * omega) / safe)
  return w0 * z0[..., None, :] + w1 * z1[..., None, :]


def interpolate(
  decode: Callable[[jax.Array], jax.Array],
  z0: jax.Array,
  z1: jax.Array,
  num: int,
  spherical: bool,
) -> jax.Array:
  """decode along slerp (spherical) or lerp paths of `num` points t = 0 ... 1 from each row of z0
  to the same row of z1 ([R, D] each): images [R, num, *decode's output shape]."""
  path = (slerp if spherical else lerp)(z0, z1, jnp.linspace(0.0, 1.0, num))
  images = decode(path.reshape(-1, path.shape[-1]))
  return images.reshape(*path.shape[:2], *images.shape[1:])


# --- figures --------------------------------------------------------------------------------------


def strip_figure(
  images: np.ndarray, row_labels: Sequence[str], column_labels: Sequence[str], title: str
) -> Figure:
  """images [K, S, H, W, C] in [0, 1] as a K x S grid: rows labelled (e.g. "dim 3, KL 2.1 nats"),
  columns labelled (e.g. the offsets)."""
  rows, columns, height, width, channels = images.shape
  padding = 2
  grid = make_grid(np.clip(images, 0.0, 1.0).reshape(-1, height, width, channels), columns, padding)
  figure = Figure(figsize=(1.0 + 0.75 * columns, 0.4 + 0.75 * rows))
  axis = figure.subplots()
  axis.imshow(grid[..., 0] if channels == 1 else grid, cmap="gray", vmin=0, vmax=255)
  axis.set_xticks(padding + (width + padding) * np.arange(columns) + width / 2, column_labels)
  axis.set_yticks(padding + (height + padding) * np.arange(rows) + height / 2, row_labels)
  axis.tick_params(length=0, labelsize=8)
  for side in axis.spines.values():
    side.set_visible(False)
  axis.set_title(title, fontsize=9)
  figure.tight_layout()
  return figure


# --- the models as decoders -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LatentSpace:
  """A trained generator seen from one of its latent spaces.

  decode: codes [B, D] -> images [B, H, W, C] in [0, 1] (compiled); draw(rng, num): codes
  [num, D] as the model samples them; spherical: whether the codes are Gaussian (interpolate with
  slerp) rather than StyleGAN2's W (lerp); label: the class every image is generated with, for
  conditional GANs (else None)."""

  name: str
  decode: Callable[[jax.Array], jax.Array]
  draw: Callable[[jax.Array, int], jax.Array]
  spherical: bool
  label: int | None = None


def _require_images(experiment, tool: str) -> None:
  if not experiment.info.is_image:
    raise NotApplicable(
      f"The {tool!r} tool draws images; {experiment.config.data.name!r} holds points of shape "
      f"{experiment.info.shape}."
    )


def _unit(experiment, images: jax.Array) -> jax.Array:
  return jnp.clip(to_unit_range(images, experiment.config.data.value_range), 0.0, 1.0)


def _vae_space(experiment, state) -> LatentSpace:
  """z flattened to [D], D = prod(family.latent_shape)."""
  family, params = experiment.family, experiment.sample_params(state)

  def decode(z):
    z = z.reshape(z.shape[0], *family.latent_shape)
    return _unit(experiment, family.likelihood.mean(family._decode(params, z)))

  def draw(rng, num):
    return jax.random.normal(rng, (num, math.prod(family.latent_shape)))

  return LatentSpace("z", jax.jit(decode), draw, spherical=True)


def _label(experiment, rng: jax.Array) -> int | None:
  labels = experiment.family.sample_labels(rng, 1)
  return None if labels is None else int(labels[0])


def _labels_for(label: int | None, num: int) -> jax.Array | None:
  return None if label is None else jnp.full((num,), label, jnp.int32)


def _gan_space(experiment, state, rng) -> LatentSpace:
  """z of a "gan" generator (truncated as sampling.truncation says), with sampling's batch norm."""
  family = experiment.family
  generate = family.sampling_generator(
    experiment.sample_params(state)["generator"], state.model_state
  )
  label = _label(experiment, rng)

  def decode(z):
    return _unit(experiment, family._to_value_range(generate(z, _labels_for(label, z.shape[0]))))

  return LatentSpace("z", jax.jit(decode), family._sampling_latents, spherical=True, label=label)


def _stylegan2_mapping(
  experiment, state, label: int | None
) -> Callable[[jax.Array, float], jax.Array]:
  """(z [B, latent_dim], psi) -> w [B, w_dim], the mapping network truncated towards w_avg by psi
  (every layer's w is the same without style mixing), conditioned on `label`."""
  family = experiment.family
  g_params, buffers = experiment.sample_params(state)["generator"], state.model_state["g_buffers"]

  @jax.jit
  def mapping(z, truncation_psi):
    return family._map(g_params, buffers, z, _labels_for(label, z.shape[0]), truncation_psi)[:, 0]

  return mapping


def _stylegan2_w_space(experiment, state, rng) -> LatentSpace:
  """StyleGAN2's W: w [B, w_dim] broadcast to every layer, constant noise; draw maps z ~ N(0, I)
  with sampling.truncation_psi."""
  family = experiment.family
  g_params, buffers = experiment.sample_params(state)["generator"], state.model_state["g_buffers"]
  label = _label(experiment, rng)
  mapping = _stylegan2_mapping(experiment, state, label)

  def decode(w):
    ws = jnp.broadcast_to(w[:, None], (w.shape[0], family.num_ws, w.shape[-1]))
    return _unit(
      experiment, family._to_value_range(family._synthesize(g_params, buffers, ws, "const"))
    )

  def draw(rng, num):
    return mapping(family._latents(rng, num), experiment.config.sampling.truncation_psi)

  return LatentSpace("w", jax.jit(decode), draw, spherical=False, label=label)


def latent_space(experiment, state, rng: jax.Array) -> LatentSpace:
  """The space the tools traverse and interpolate in: a VAE's z, a GAN's z, StyleGAN2's W."""
  family = experiment.config.family
  if family == "vae":
    return _vae_space(experiment, state)
  if family == "stylegan2":
    return _stylegan2_w_space(experiment, state, rng)
  return _gan_space(experiment, state, rng)


def _label_note(space: LatentSpace) -> str:
  return "" if space.label is None else f", class {space.label}"


# --- tools ----------------------------------------------------------------------------------------


def _test_images(experiment, num: int) -> np.ndarray:
  """The first `num` images [n, H, W, C] of data.eval_split, preprocessed as evaluation does."""
  config = experiment.config
  batches = eval_batches(
    config.data, num, num_examples=num, data_seed=config.seed, noise_seed=config.eval.seed
  )
  batch = next(iter(batches))
  return batch["x"][batch["mask"] > 0]


def run_vae_traversal(experiment, state, rng: jax.Array) -> ToolResult:
  """Ranks z's dimensions by their KL averaged over NUM_KL_IMAGES test images, then traverses the
  top NUM_TRAVERSED: z_d = m_d + offset (offsets in prior standard deviations, -3 ... 3) around
  the posterior mean m of the first test image, the other coordinates held at m."""
  del rng
  _require_images(experiment, "vae_traversal")
  family, params = experiment.family, experiment.sample_params(state)
  images = _test_images(experiment, NUM_KL_IMAGES)
  mean, log_std = jax.jit(family._encode)(params, images)
  mean, log_std = mean.reshape(len(images), -1), log_std.reshape(len(images), -1)
  kl = vae_kl_per_dimension(mean, log_std)
  order = ranked_dimensions(kl)
  top = order[:NUM_TRAVERSED]
  directions = jnp.eye(kl.shape[0])[top]
  space = _vae_space(experiment, state)
  strip = traverse(space.decode, mean[0], directions, jnp.asarray(TRAVERSAL_OFFSETS))
  kl = np.asarray(kl)
  figure = strip_figure(
    np.asarray(strip),
    [f"dim {d}, KL {kl[d]:.2f} nats" for d in top],
    [f"{offset:+g}" for offset in TRAVERSAL_OFFSETS],
    f"z_d = posterior mean + offset (test image 0); dims by KL over {len(images)} test images",
  )
  return ToolResult(
    figures={"traversal": figure},
    summary={
      "kl_nats_ranked": {f"dim {d}": round(float(kl[d]), 4) for d in order},
      "active_dims": int(np.sum(kl > ACTIVE_KL_NATS)),
      "active_threshold_nats": ACTIVE_KL_NATS,
      "total_kl_nats": float(kl.sum()),
      "latent_dim": int(kl.shape[0]),
      "num_images": len(images),
    },
  )


def _first_layer_activations(experiment, g_params, z: jax.Array, labels) -> jax.Array:
  """The output [N, A] of G's first dense layer (top-level `Dense_0`) for z [N, latent_dim];
  compiled alone, the rest of G is dead code and never runs."""
  generator = experiment.family.generator

  @jax.jit
  def activations(z):
    _, variables = generator.apply(
      {"params": g_params},
      z,
      labels,
      mutable=["batch_stats", "intermediates"],
      capture_intermediates=lambda module, method: module.path == ("Dense_0",),
    )
    return variables.get("intermediates", {}).get("Dense_0", {}).get("__call__", (None,))[0]

  result = activations(z)
  if result is None:
    raise NotApplicable(
      f"gan_directions needs a generator whose first layer is a top-level dense layer (Dense_0), "
      f"as the mlp, dcgan and resnet networks have; model.network={experiment.config.model.network!r}."
    )
  return result.reshape(z.shape[0], -1)


def run_gan_directions(experiment, state, rng: jax.Array) -> ToolResult:
  """GANSpace on NUM_GANSPACE_CODES sampled latents. StyleGAN2: PCA of w = mapping(z) (psi = 1);
  each direction v_k is walked from a sampled w in steps of its standard deviation sigma_k
  (w + offset sigma_k v_k, constant noise). "gan": PCA of G's first-layer activations, whose
  component coordinates are regressed back to z by least squares (`regress_to_latents`); each
  unit z direction is walked by offset (z ~ N(0, I): one standard deviation per unit)."""
  _require_images(experiment, "gan_directions")
  fit_rng, space_rng, center_rng = jax.random.split(rng, 3)
  space = latent_space(experiment, state, space_rng)
  if space.name == "w":
    z = experiment.family._latents(fit_rng, NUM_GANSPACE_CODES)
    codes = _stylegan2_mapping(experiment, state, space.label)(z, 1.0)
    directions, ratio, mean = principal_directions(codes, NUM_TRAVERSED)
    sigma = jnp.std((codes - mean) @ directions.T, axis=0)
    steps, how = directions * sigma[:, None], "PCA of w = mapping(z); offsets in sigma_k"
  else:
    z = experiment.family._latents(fit_rng, NUM_GANSPACE_CODES)
    labels = _labels_for(space.label, NUM_GANSPACE_CODES)
    g_params = experiment.sample_params(state)["generator"]
    activations = _first_layer_activations(experiment, g_params, z, labels)
    components, ratio, mean = principal_directions(activations, NUM_TRAVERSED)
    steps = regress_to_latents(z, activations, components, mean)
    how = "PCA of G's first-layer activations, regressed to z; offsets in z units"
  center = space.draw(center_rng, 1)[0]
  strip = traverse(space.decode, center, steps, jnp.asarray(TRAVERSAL_OFFSETS))
  ratio = np.asarray(ratio)
  figure = strip_figure(
    np.asarray(strip),
    [f"PC {k}, {100 * r:.1f}% var" for k, r in enumerate(ratio)],
    [f"{offset:+g}" for offset in TRAVERSAL_OFFSETS],
    f"GANSpace in {space.name}: {how}{_label_note(space)}",
  )
  return ToolResult(
    figures={"directions": figure},
    summary={
      "space": space.name,
      "method": how,
      "explained_variance_ratio": [round(float(r), 4) for r in ratio],
      "cumulative_explained_variance": float(ratio.sum()),
      "num_codes": NUM_GANSPACE_CODES,
      **({} if space.label is None else {"label": space.label}),
    },
  )


def run_latent_interpolation(experiment, state, rng: jax.Array) -> ToolResult:
  """INTERPOLATION_ROWS paths of INTERPOLATION_STEPS images between pairs of sampled codes: slerp
  for Gaussian z (VAE prior, GAN), lerp in StyleGAN2's W. The summary's pixel steps are the mean
  |x_{t+1} - x_t| (images in [0, 1]) between neighbours, averaged and at their largest: a jump
  stands out as a max far above the mean."""
  _require_images(experiment, "latent_interpolation")
  space_rng, start_rng, end_rng = jax.random.split(rng, 3)
  space = latent_space(experiment, state, space_rng)
  start = space.draw(start_rng, INTERPOLATION_ROWS)
  end = space.draw(end_rng, INTERPOLATION_ROWS)
  paths = np.asarray(interpolate(space.decode, start, end, INTERPOLATION_STEPS, space.spherical))
  kind = "slerp" if space.spherical else "lerp"
  ts = np.linspace(0.0, 1.0, INTERPOLATION_STEPS)
  figure = strip_figure(
    paths,
    [f"pair {row}" for row in range(INTERPOLATION_ROWS)],
    [f"t={t:.2f}" for t in ts],
    f"{kind} in {space.name}{_label_note(space)}",
  )
  pixel_steps = np.abs(np.diff(paths, axis=1)).mean(axis=(2, 3, 4))  # [rows, steps - 1]
  return ToolResult(
    figures={"interpolation": figure},
    summary={
      "space": space.name,
      "path": kind,
      "rows": INTERPOLATION_ROWS,
      "steps": INTERPOLATION_STEPS,
      "pixel_step_mean": float(pixel_steps.mean()),
      "pixel_step_max": float(pixel_steps.max()),
    },
  )


TOOLS.register("vae_traversal")(
  Tool(
    ("vae",),
    "latent dimensions ranked by average KL, traversed around a test image's code",
    run_vae_traversal,
  )
)
TOOLS.register("gan_directions")(
  Tool(
    ("gan", "stylegan2"),
    "GANSpace principal directions (w for StyleGAN2, G's first layer "
    "regressed to z for DCGAN-style generators)",
    run_gan_directions,
  )
)
TOOLS.register("latent_interpolation")(
  Tool(
    ("vae", "gan", "stylegan2"),
    "interpolations between sampled latents: slerp in Gaussian z, lerp in StyleGAN2's W",
    run_latent_interpolation,
  )
)
