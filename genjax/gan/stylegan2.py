"""The training rules of StyleGAN2 (Karras et al. 2020) as pure functions; the StyleGAN2 family
(genjax.families.stylegan2) composes them into its train step.

  lazy regularisation  a regulariser of weight lambda applied every k steps with weight k lambda,
                       as its own optimizer update; the optimizer's learning rate and Adam betas
                       are corrected by r = k / (k + 1) (lr r, beta^r), as that optimizer now takes
                       k + 1 updates per k steps (Sec. 3.1 and Appendix B of the paper).
  style mixing         with probability p, two latents are mapped and the synthesis network reads
                       the first's w before a crossover entry c ~ U{1, ..., num_ws - 1}, the
                       second's from c on.
  path length          J_w = d G(w) / d w; with y ~ N(0, I) / sqrt(H W) per image,
                       a = || J_w^T y ||_2 (sum over w_dim, mean over the num_ws entries, then
                       sqrt); the running mean m <- m + decay (mean(a) - m), and the penalty
                       (a - m)^2 per image (the gradient also flows through this step's m, as in
                       the official implementation).
  generator EMA        beta = 0.5^(batch / max(N, 1e-8)), N = ema_kimg 1000 images, ramped up as
                       N = min(N, images_seen rampup) when rampup > 0.
  style spread         a diagnostic of mode collapse: weight demodulation cancels any common
                       scale of a layer's styles s = A(w), so what carries z into it is
                       std_z(s) / |mean_z(s)| (averaged over channels), about 0.6-0.8 at
                       initialisation; growing affine biases can make it fall.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def lazy_regularization_factor(interval: int) -> float:
  """r = k / (k + 1) for a regulariser applied every k > 1 steps as its own update; 1 otherwise."""
  return interval / (interval + 1) if interval > 1 else 1.0


def ema_beta(
  batch_size: int, images_seen: jax.Array, ema_kimg: float, ema_rampup: float
) -> jax.Array:
  """The generator EMA's decay per step: 0.5^(batch_size / N), N = ema_kimg * 1000 images, or
  min(N, images_seen * ema_rampup) with a ramp-up (ema_rampup > 0)."""
  half_life = jnp.float32(ema_kimg * 1000.0)
  if ema_rampup > 0:
    half_life = jnp.minimum(half_life, images_seen.astype(jnp.float32) * ema_rampup)
  return 0.5 ** (batch_size / jnp.maximum(half_life, 1e-8))


def style_mixing_cutoff(rng: jax.Array, num_ws: int, probability: float) -> jax.Array:
  """The crossover entry: uniform in {1, ..., num_ws - 1} with `probability`, else num_ws (no
  mixing). One per batch, as in the official implementation."""
  use_rng, cutoff_rng = jax.random.split(rng)
  cutoff = jax.random.randint(cutoff_rng, (), 1, num_ws)
  return jnp.where(jax.random.uniform(use_rng) < probability, cutoff, num_ws)


def mix_styles(ws: jax.Array, other_ws: jax.Array, cutoff: jax.Array | int) -> jax.Array:
  """ws [B, num_ws, w_dim] with entries cutoff, cutoff + 1, ... taken from other_ws."""
  entry = jnp.arange(ws.shape[1])[None, :, None]
  return jnp.where(entry < cutoff, ws, other_ws)


def path_lengths(
  synthesize: Callable[[jax.Array], jax.Array], ws: jax.Array, rng: jax.Array
) -> jax.Array:
  """a = || J_w^T y || per image [B] for images = synthesize(ws) [B, H, W, C] and
  y ~ N(0, I) / sqrt(H W); ws [B, num_ws, w_dim]."""
  images, pullback = jax.vjp(synthesize, ws)
  height, width = images.shape[1:3]
  directions = jax.random.normal(rng, images.shape, images.dtype) / jnp.sqrt(height * width)
  (gradient,) = pullback(directions)
  return jnp.sqrt(jnp.mean(jnp.sum(jnp.square(gradient), axis=2), axis=1))


def path_length_penalty(
  lengths: jax.Array, running_mean: jax.Array, decay: float
) -> tuple[jax.Array, jax.Array]:
  """(mean over images of (a - m)^2, m) with m = running_mean + decay (mean(a) - running_mean);
  store stop_gradient(m) as the next running mean."""
  mean = running_mean + decay * (jnp.mean(lengths) - running_mean)
  return jnp.mean(jnp.square(lengths - mean)), mean


def style_spread(generator, variables, z: jax.Array) -> dict:
  """How much the styles of a StyleGAN2Generator with `variables` ({"params", "buffers"}) depend
  on latents z [N, z_dim]: {"w_std", "image_std", "layers": {name: {"std", "abs_mean",
  "relative_spread"}}}, std over z averaged over dimensions (w, pixels, constant noise) or over
  channels (each synthesis layer's styles s = A(w)), |mean over z| averaged over channels, and
  their ratio (see the module docstring)."""
  ws = generator.apply(variables, z, method="map")
  images, captured = generator.apply(
    variables,
    ws,
    method="synthesize",
    noise_mode="const",
    capture_intermediates=True,
    mutable=["intermediates"],
  )
  layers = {}
  for name, layer in captured["intermediates"]["synthesis"].items():
    if "affine" in layer:
      (styles,) = layer["affine"]["__call__"]  # [N, in_channels]
      std, abs_mean = float(styles.std(0).mean()), float(jnp.abs(styles.mean(0)).mean())
      layers[name] = {
        "std": round(std, 4),
        "abs_mean": round(abs_mean, 4),
        "relative_spread": round(std / abs_mean, 4),
      }
  return {
    "w_std": round(float(ws[:, 0].std(0).mean()), 4),
    "image_std": round(float(images.std(0).mean()), 4),
    "layers": layers,
  }
