"""Projection of an image into a StyleGAN2 generator's latent space, as pure functions (Karras et
al. 2020, Sec. 5, and the official projector; W+ as in Abdal et al. 2019, Image2StyleGAN).

Given a target image x [H, W, C] in the model's [-1, 1] range and a synthesis function
G(ws [num_ws, w_dim], noise maps) -> [H, W, C], find ws and the per-layer noise maps with
G(ws, noise) close to x:

  space "w_plus"  ws holds one w per synthesis input (num_ws free vectors);
  space "w"       one w repeated num_ws times (what the official projector optimises).

Start from w_avg and noise maps ~ N(0, I), then take num_steps Adam steps (betas 0.9, 0.999) on

  loss = mean (G(ws + n_t, noise) - x)^2 + noise_weight * sum over noise maps of R(noise)

  n_t   ~ N(0, s_t^2) per entry of the optimised w's, s_t = w_std initial_noise_factor
        max(0, 1 - t / noise_ramp)^2 with t = step / num_steps (exploration early on), and
        w_std = sqrt(E ||w - w_avg||^2) over mapped random latents;
  lr_t  = lr min(1, t / lr_rampup) (1/2 - 1/2 cos(pi min(1, (1 - t) / lr_rampdown)));
  R(n)  = sum over the scales of n, 2x2 average-pooled down to 8x8, of the squared mean products
          of n with itself shifted by one pixel along each axis (keeps the noise maps from
          carrying the image);

and each noise map renormalised to mean 0 and mean square 1 after every step. The distance is the
pixel MSE (the official projector uses LPIPS on VGG16 features, whose weights genjax does not
ship). `optimize_noise=False` keeps the given noise maps fixed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

SPACES = ("w_plus", "w")


@dataclasses.dataclass(frozen=True)
class ProjectionSettings:
  """The projector's hyperparameters (config section `projection`; defaults of the official
  projector except the space and the distance)."""

  space: str = "w_plus"
  num_steps: int = 1000
  num_snapshots: int = 10  # images recorded along the way, every num_steps / num_snapshots steps
  w_samples: int = 10_000  # latents mapped for w_avg and w_std
  lr: float = 0.1
  lr_rampup: float = 0.05
  lr_rampdown: float = 0.25
  initial_noise_factor: float = 0.05
  noise_ramp: float = 0.75
  noise_weight: float = 1e5
  optimize_noise: bool = True

  def __post_init__(self):
    if self.space not in SPACES:
      raise ValueError(f"Unknown projection.space {self.space!r}; use one of {', '.join(SPACES)}.")
    if self.num_steps < 1 or self.num_snapshots < 1 or self.num_steps % self.num_snapshots:
      raise ValueError(
        f"projection.num_steps={self.num_steps} must be a positive multiple of "
        f"projection.num_snapshots={self.num_snapshots}."
      )
    if self.w_samples < 2:
      raise ValueError(f"projection.w_samples must be >= 2, got {self.w_samples}.")

  @classmethod
  def from_config(cls, section: ml_collections.ConfigDict) -> ProjectionSettings:
    fields = {field.name for field in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in section.items() if key in fields})


@dataclasses.dataclass(frozen=True)
class Projection:
  """ws [num_ws, w_dim]; noise: the noise maps' tree; image [H, W, C] = G(ws, noise);
  distances [num_steps]: the MSE of each step (with that step's exploration noise on w);
  snapshots [num_snapshots, H, W, C]: G(ws, noise) after every num_steps / num_snapshots steps."""

  ws: jax.Array
  noise: Any
  image: jax.Array
  distances: jax.Array
  snapshots: jax.Array


jax.tree_util.register_dataclass(
  Projection, data_fields=["ws", "noise", "image", "distances", "snapshots"], meta_fields=[]
)


def w_statistics(ws: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(w_avg [w_dim], w_std = sqrt(mean over samples of ||w - w_avg||^2)) of mapped w's [N, w_dim]."""
  w_avg = ws.mean(axis=0)
  return w_avg, jnp.sqrt(jnp.sum(jnp.square(ws - w_avg)) / ws.shape[0])


def noise_regularization(noise_maps: list[jax.Array]) -> jax.Array:
  """R summed over noise maps [H, W] (square, power-of-two sides; see the module docstring)."""
  total = jnp.zeros(())
  for noise in noise_maps:
    while True:
      total += jnp.mean(noise * jnp.roll(noise, 1, axis=1)) ** 2
      total += jnp.mean(noise * jnp.roll(noise, 1, axis=0)) ** 2
      if noise.shape[0] <= 8:
        break
      size = noise.shape[0] // 2
      noise = noise.reshape(size, 2, size, 2).mean(axis=(1, 3))
  return total


def normalize_noise(noise: jax.Array) -> jax.Array:
  """noise with mean 0 and mean square 1."""
  centred = noise - noise.mean()
  return centred * jax.lax.rsqrt(jnp.mean(jnp.square(centred)))


def learning_rate(step: jax.Array, settings: ProjectionSettings) -> jax.Array:
  """lr_t of the module docstring at t = step / num_steps."""
  t = step / settings.num_steps
  ramp = jnp.minimum(1.0, (1.0 - t) / settings.lr_rampdown)
  ramp = 0.5 - 0.5 * jnp.cos(ramp * jnp.pi)
  return settings.lr * ramp * jnp.minimum(1.0, t / settings.lr_rampup)


def w_noise_scale(step: jax.Array, settings: ProjectionSettings, w_std: jax.Array) -> jax.Array:
  """s_t of the module docstring at t = step / num_steps."""
  t = step / settings.num_steps
  return (
    w_std * settings.initial_noise_factor * jnp.maximum(0.0, 1.0 - t / settings.noise_ramp) ** 2
  )


def project(
  synthesize: Callable[[jax.Array, Any], jax.Array],
  target: jax.Array,
  w_avg: jax.Array,
  w_std: jax.Array,
  noise: Any,
  num_ws: int,
  rng: jax.Array,
  settings: ProjectionSettings,
) -> Projection:
  """Projects target [H, W, C] (see the module docstring). noise: the starting noise maps (a tree
  of [r, r] arrays, kept fixed when settings.optimize_noise is False); synthesize(ws, noise)."""
  rows = num_ws if settings.space == "w_plus" else 1
  variables = {"w": jnp.broadcast_to(w_avg, (rows, w_avg.shape[-1]))}
  if settings.optimize_noise:
    variables["noise"] = noise
  optimizer = optax.adam(lambda count: learning_rate(count, settings), b1=0.9, b2=0.999, eps=1e-8)

  def current(variables, w_noise=0.0):
    ws = jnp.broadcast_to(variables["w"] + w_noise, (num_ws, w_avg.shape[-1]))
    return ws, variables.get("noise", noise)

  def loss_fn(variables, w_noise):
    ws, noise_maps = current(variables, w_noise)
    distance = jnp.mean(jnp.square(synthesize(ws, noise_maps) - target))
    if not settings.optimize_noise:
      return distance, distance
    regularization = noise_regularization(jax.tree.leaves(noise_maps))
    return distance + settings.noise_weight * regularization, distance

  def step_fn(carry, step):
    variables, opt_state, rng = carry
    rng, w_rng = jax.random.split(rng)
    w_noise = jax.random.normal(w_rng, variables["w"].shape) * w_noise_scale(step, settings, w_std)
    grads, distance = jax.grad(loss_fn, has_aux=True)(variables, w_noise)
    updates, opt_state = optimizer.update(grads, opt_state, variables)
    variables = optax.apply_updates(variables, updates)
    if settings.optimize_noise:
      variables = {**variables, "noise": jax.tree.map(normalize_noise, variables["noise"])}
    return (variables, opt_state, rng), distance

  chunk = settings.num_steps // settings.num_snapshots

  def snapshot_fn(carry, first_step):
    carry, distances = jax.lax.scan(step_fn, carry, first_step + jnp.arange(chunk))
    return carry, (distances, synthesize(*current(carry[0])))

  starts = jnp.arange(settings.num_snapshots) * chunk
  (variables, _, _), (distances, snapshots) = jax.lax.scan(
    snapshot_fn, (variables, optimizer.init(variables), rng), starts
  )
  ws, noise_maps = current(variables)
  return Projection(
    ws=ws,
    noise=noise_maps,
    image=snapshots[-1],
    distances=distances.reshape(-1),
    snapshots=snapshots,
  )
