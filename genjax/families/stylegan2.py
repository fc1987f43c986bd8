"""StyleGAN2 (Karras et al. 2020) in the GAN family: its networks (genjax.models.stylegan2), its
training rules (genjax.gan.stylegan2) and the GAN family's shared parts (losses, ADA and
DiffAugment, the divergence guard, the two optimizers, image value ranges).

params = {"generator": ..., "discriminator": ...}; model_state = {"g_buffers": G's "buffers"
collection (w_avg [w_dim], each layer's noise_const [r, r]), "pl_mean": the path lengths' running
mean, and ADA's state when model.augment = "ada"}; ema_params["generator"] is G's EMA.

One train step (batch B of real images, as in the official training loop):
  1. D:   L_D = softplus(D(aug(G(z)))) + softplus(-D(aug(x)))      (model.loss, non-saturating)
  2. D, every model.r1_interval steps: r1_interval * r1_gamma / 2 * ||grad_x D(aug(x))||^2 as its
          own update (lazy R1; with r1_interval = 1 it is added to step 1 instead)
  3. G:   L_G = softplus(-D(aug(G(z))))
  4. G, every model.pl_interval steps: pl_interval * pl_weight * (a - m)^2 on B / pl_batch_shrink
          latents as its own update (lazy path length regularisation, genjax.gan.stylegan2; with
          pl_interval = 1 it is added to step 3 instead, the official "Gboth" phase)
  5. G's EMA with beta = 0.5^(B / (ema_kimg 1000)) (ramped up by ema_rampup), and
     w_avg <- mean(w) + w_avg_beta (w_avg - mean(w)) over step 3's latents.
Every G(z) of steps 1, 3 and 4 maps z (and a second latent, mixed in with probability
model.style_mixing) and synthesises with fresh per-pixel noise. Both optimizers are Adam with the
lazy-regularisation correction r = k / (k + 1) (lr r, betas^r) for their interval k > 1. Labels of
generated images: the real batch's labels in step 1, uniform in steps 3 and 4.
Logged: d_loss, d_real, d_fake, d_real_sign, g_loss, the gradient norms, r1 and pl_penalty (the
interval times their value on regularisation steps and 0 between them, so their mean over a
logging window that is a multiple of the interval is their mean per regularisation step),
pl_mean, ema_beta, and ADA's p and r_t.

Sampling: G(z, y) with truncation psi (sampling.truncation_psi) and sampling.noise_mode ("const":
each layer's fixed noise, so a sample depends on its latent and label only, as in the official
generate.py). Grids: "samples", "interpolations" (linear in w), "truncation" (rows of latents,
columns psi = 1 ... 0: the last column is w_avg's image), "style_mixing" (the classic grid: the top
row and the left column are the sources; cell (i, j) takes the entries of w before
sampling.mixing_crossover from column j's latent and the rest from row i's), and
"class_conditional" for conditional models.

Projection (--mode=project, genjax.trainer.project): `project` fits W+ (or W) and the noise maps
to images with genjax.gan.projection.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import optax

from genjax.families import FAMILIES
from genjax.families.gan import ADA_STATE, GANFamily, GANOptimizer
from genjax.gan import settings
from genjax.gan.ada import ada_init_state, ada_update
from genjax.gan.projection import Projection, ProjectionSettings, project, w_statistics
from genjax.gan.regularizers import r1_penalty
from genjax.gan.stylegan2 import (
  ema_beta,
  lazy_regularization_factor,
  mix_styles,
  path_length_penalty,
  path_lengths,
  style_mixing_cutoff,
)
from genjax.models import stylegan2 as networks
from genjax.models.gan import GAN_NETWORKS
from genjax.optim import make_optimizer
from genjax.train_state import TrainState, apply_updates

G_BUFFERS = "g_buffers"  # model_state key of G's "buffers" collection
PL_MEAN = "pl_mean"


@GAN_NETWORKS.register("stylegan2")
def build_stylegan2(model, shape, num_classes, is_image):
  """The StyleGAN2 generator and discriminator for images [R, R, C], R a power of two >= 8."""
  if not is_image or len(shape) != 3 or shape[0] != shape[1]:
    raise ValueError(
      f"model.network='stylegan2' needs square images [R, R, C], got examples of shape {shape}."
    )
  resolution, channels = shape[0], shape[2]
  networks.block_resolutions(resolution)  # checks the power of two
  common = {
    "num_classes": num_classes,
    "channel_base": model.channel_base,
    "channel_max": model.channel_max,
    "conv_clamp": model.conv_clamp,
  }
  generator = networks.StyleGAN2Generator(
    resolution,
    channels,
    w_dim=model.w_dim,
    mapping_layers=model.mapping_layers,
    mapping_lr=model.mapping_lr,
    affine_lr=model.affine_lr,
    **common,
  )
  discriminator = networks.StyleGAN2Discriminator(
    resolution,
    architecture=model.d_architecture,
    mbstd_group_size=model.mbstd_group_size,
    mbstd_channels=model.mbstd_channels,
    mapping_layers=model.d_mapping_layers,
    **common,
  )
  return generator, discriminator


@FAMILIES.register("stylegan2")
class StyleGAN2Family(GANFamily):
  """See the module docstring; config keys in genjax.gan.settings.add_stylegan2_defaults."""

  add_defaults = staticmethod(settings.add_stylegan2_defaults)
  # w_avg and the constant noise maps are G's; pl_mean and ADA's p start fresh, as in the official
  # resume (which copies G, D and G_ema only).
  owned_state: ClassVar[dict[str, str]] = {G_BUFFERS: "generator"}

  def __init__(self, config, info, mesh):
    model = config.model
    unsupported = {
      "model.network": model.network != "stylegan2",
      "model.n_critic": model.n_critic != 1,
      "model.gradient_penalty": model.gradient_penalty > 0,
      "model.spectral_norm": model.spectral_norm,
      "model.g_ortho_reg": model.g_ortho_reg > 0,
    }
    for key, bad in unsupported.items():
      if bad:
        raise ValueError(
          f"{key}={config[key.split('.')[0]][key.split('.')[1]]!r} is not part of StyleGAN2 "
          "(family 'stylegan2' needs model.network='stylegan2', n_critic=1, and no gradient "
          "penalty, spectral norm or orthogonal regularisation; use family 'gan' for those)."
        )
    for key in ("r1_interval", "pl_interval", "pl_batch_shrink"):
      if model[key] < 1:
        raise ValueError(f"model.{key} must be >= 1, got {model[key]}.")
    if config.sampling.noise_mode not in networks.NOISE_MODES:
      raise ValueError(
        f"Unknown sampling.noise_mode {config.sampling.noise_mode!r}; use one of "
        f"{', '.join(networks.NOISE_MODES)}."
      )
    pl_batch = config.training.batch_size // model.pl_batch_shrink
    if model.pl_weight > 0 and pl_batch < 1:
      raise ValueError(
        f"training.batch_size={config.training.batch_size} / model.pl_batch_shrink="
        f"{model.pl_batch_shrink} leaves no images for the path length regulariser."
      )
    super().__init__(config, info, mesh)
    self.num_ws = self.generator.num_ws
    # The same networks (same parameters) for the second-order calls, R1's D and path length's
    # G: on CPU their convolutions are then matmuls, 3-10x faster there (networks._correlate).
    self.r1_discriminator = self.discriminator.clone(differentiated_twice=True)
    self.pl_generator = self.generator.clone(differentiated_twice=True)

  # --- optimizers -----------------------------------------------------------------------------
  def make_optimizer(self):
    """Adam for G and D with the lazy-regularisation correction of their intervals (G:
    model.pl_interval, D: model.r1_interval): lr r and betas^r, r = k / (k + 1)."""
    optim, model, steps = self.config.optim, self.config.model, self.config.training.num_train_steps

    def corrected(lr: float, interval: int) -> tuple[optax.GradientTransformation, Any]:
      factor = lazy_regularization_factor(interval)
      section = ml_collections.ConfigDict(optim.to_dict())
      section.b1, section.b2 = optim.b1**factor, optim.b2**factor
      return make_optimizer(section, steps, lr=lr * factor)

    g_optimizer, g_schedule = corrected(optim.lr, model.pl_interval)
    d_optimizer, d_schedule = corrected(optim.d_lr, model.r1_interval)

    def learning_rates(step: jax.Array) -> dict[str, jax.Array]:
      return {"lr": g_schedule(step), "d_lr": d_schedule(step)}

    return GANOptimizer(generator=g_optimizer, discriminator=d_optimizer), learning_rates

  # --- networks -------------------------------------------------------------------------------
  def init(self, rng, batch):
    """The GAN family's keys and initialisation, with G's "buffers" collection kept as well."""
    g_rng, d_rng = jax.random.split(rng)
    z = jnp.zeros((batch["x"].shape[0], self.config.model.latent_dim))
    labels = self._labels(batch)
    g_variables = self.generator.init(g_rng, z, labels, noise_mode="const")
    d_variables = self.discriminator.init(d_rng, batch["x"], labels)
    model_state = {G_BUFFERS: g_variables["buffers"], PL_MEAN: jnp.zeros(())}
    if self.ada_pipeline:
      model_state[ADA_STATE] = ada_init_state()
    params = {"generator": g_variables["params"], "discriminator": d_variables["params"]}
    return params, model_state

  def _to_value_range(self, x: jax.Array) -> jax.Array:
    """Samples in data.value_range: G's output is linear, so it is clipped to [-1, 1] first (as
    the official code clamps when it writes images); D always sees the unclipped output."""
    return super()._to_value_range(jnp.clip(x, -1.0, 1.0))

  def _discriminate(
    self, d_params, model_state, x, labels, update_stats: bool, differentiated_twice: bool = False
  ):
    """D(x, labels) [B] and the unchanged model_state (this D keeps no statistics);
    differentiated_twice for a call that is differentiated to second order (R1)."""
    network = self.r1_discriminator if differentiated_twice else self.discriminator
    return self.apply_network(network, {"params": d_params}, x, labels), model_state

  def _map(self, g_params, buffers, z, labels, truncation_psi=1.0) -> jax.Array:
    """ws [B, num_ws, w_dim]."""
    variables = {"params": g_params, "buffers": buffers}
    return self.apply_network(self.generator, variables, z, labels, truncation_psi, method="map")

  def _synthesize(
    self, g_params, buffers, ws, noise_mode: str, rng=None, differentiated_twice: bool = False
  ) -> jax.Array:
    """Images [B, R, R, C] for ws; differentiated_twice for the path length's second-order call."""
    variables = {"params": g_params, "buffers": buffers}
    rngs = {"noise": rng} if noise_mode == "random" else {}
    network = self.pl_generator if differentiated_twice else self.generator
    return self.apply_network(network, variables, ws, noise_mode, method="synthesize", rngs=rngs)

  def _training_ws(self, g_params, buffers, rng, labels, num: int) -> jax.Array:
    """ws for `num` fresh latents, with style mixing at probability model.style_mixing."""
    z_rng, mix_z_rng, cutoff_rng = jax.random.split(rng, 3)
    ws = self._map(g_params, buffers, self._latents(z_rng, num), labels)
    if self.config.model.style_mixing <= 0:
      return ws
    other = self._map(g_params, buffers, self._latents(mix_z_rng, num), labels)
    cutoff = style_mixing_cutoff(cutoff_rng, self.num_ws, self.config.model.style_mixing)
    return mix_styles(ws, other, cutoff)

  def _training_images(self, g_params, buffers, rng, labels, num: int):
    """(G(z) [num, R, R, C] in [-1, 1] with random noise and style mixing, its ws)."""
    ws_rng, noise_rng = jax.random.split(rng)
    ws = self._training_ws(g_params, buffers, ws_rng, labels, num)
    return self._synthesize(g_params, buffers, ws, "random", noise_rng), ws

  def _sampling_latents(self, rng, num):
    """z ~ N(0, I) [num, latent_dim]: StyleGAN2 truncates in W (sampling.truncation_psi)."""
    return self._latents(rng, num)

  def sampling_generator(self, g_params, model_state):
    """(z, labels) -> G(z, labels) with sampling.truncation_psi and sampling.noise_mode."""
    sampling, buffers = self.config.sampling, model_state[G_BUFFERS]

    def generate(z, labels, truncation_psi=sampling.truncation_psi, rng=None):
      ws = self._map(g_params, buffers, z, labels, truncation_psi)
      return self._synthesize(g_params, buffers, ws, sampling.noise_mode, rng)

    return generate

  # --- the step -------------------------------------------------------------------------------
  def _lazy_intervals(self) -> dict[str, int]:
    """{"r1": k, "pl": k} for the regularisers that run as their own update every k > 1 steps."""
    model = self.config.model
    intervals = {
      "r1": (model.r1_gamma, model.r1_interval),
      "pl": (model.pl_weight, model.pl_interval),
    }
    return {name: k for name, (weight, k) in intervals.items() if weight > 0 and k > 1}

  @property
  def train_step_cycle(self) -> int:
    return math.lcm(1, *self._lazy_intervals().values())

  def train_step_kind(self, step: int) -> str:
    """The kind of step `step`: "plain" (the D and G updates only), or the lazy regularisers it
    adds ("r1", "pl", "r1+pl")."""
    due = [name for name, k in self._lazy_intervals().items() if step % k == 0]
    return "+".join(due) or "plain"

  def train_step(self, state: TrainState, batch) -> tuple[TrainState, dict[str, jax.Array]]:
    model = self.config.model
    num = batch["x"].shape[0]
    rng, d_rng, r1_rng, g_rng, pl_rng = jax.random.split(state.rng, 5)
    g_params, d_params = state.params["generator"], state.params["discriminator"]
    model_state = state.model_state
    buffers = model_state[G_BUFFERS]
    real = self._from_value_range(batch["x"])
    labels = self._labels(batch)
    lazy = self._lazy_intervals()
    r1_lazy, pl_lazy = "r1" in lazy, "pl" in lazy

    def critic(d_params, x, key, differentiated_twice=False):
      return self._discriminate(
        d_params,
        model_state,
        self._augment(x, key, model_state),
        labels,
        False,
        differentiated_twice,
      )[0]

    def r1_term(d_params, key):
      return r1_penalty(lambda x: critic(d_params, x, key, differentiated_twice=True), real)

    # 1. D on fakes (G fixed) and reals; R1 joins it when not lazy.
    def d_loss_fn(d_params):
      fake_rng, real_aug, fake_aug, r1_key = jax.random.split(d_rng, 4)
      fake, _ = self._training_images(g_params, buffers, fake_rng, labels, num)
      d_fake = critic(d_params, jax.lax.stop_gradient(fake), fake_aug)
      d_real = critic(d_params, real, real_aug)
      loss = self.loss_fns.discriminator(d_real, d_fake)
      metrics = {
        "d_real": d_real.mean(),
        "d_fake": d_fake.mean(),
        "d_real_sign": jnp.sign(d_real).mean(),
      }
      if model.r1_gamma > 0 and not r1_lazy:
        metrics["r1"] = r1_term(d_params, r1_key)
        loss = loss + 0.5 * model.r1_gamma * metrics["r1"]
      return loss, metrics

    (d_loss, d_metrics), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(d_params)
    d_params, _, d_opt_state = apply_updates(
      d_params,
      d_params,
      state.opt_state["discriminator"],
      d_grads,
      self.optimizer.discriminator,
      0.0,
    )
    metrics = {
      "d_loss": d_loss,
      "d_loss_max": d_loss,
      **d_metrics,
      "d_grad_norm": optax.global_norm(d_grads),
    }
    if self.ada_pipeline:
      ada_state, metrics["ada_rt"] = ada_update(
        model_state[ADA_STATE],
        d_metrics["d_real_sign"],
        target=model.ada_target,
        interval=model.ada_interval,
        images_per_update=num,
        speed_kimg=model.ada_kimg,
      )
      model_state = {**model_state, ADA_STATE: ada_state}
      metrics["ada_p"] = ada_state["p"]

    # 2. Lazy R1: its own D update every r1_interval steps, weighted by the interval.
    if r1_lazy:

      def r1_update(carry):
        d_params, d_opt_state = carry
        weight = 0.5 * model.r1_gamma * model.r1_interval
        value, grads = jax.value_and_grad(lambda p: weight * r1_term(p, r1_rng))(d_params)
        d_params, _, d_opt_state = apply_updates(
          d_params, d_params, d_opt_state, grads, self.optimizer.discriminator, 0.0
        )
        return (d_params, d_opt_state), value / (0.5 * model.r1_gamma)

      def skip_r1(carry):
        return carry, jnp.zeros(())

      due = state.step % model.r1_interval == 0
      (d_params, d_opt_state), metrics["r1"] = jax.lax.cond(
        due, r1_update, skip_r1, (d_params, d_opt_state)
      )

    pl_mean = model_state[PL_MEAN]
    pl_num = max(num // model.pl_batch_shrink, 1)

    def pl_terms(g_params):
      """(penalty, the path lengths' new running mean) on pl_num fresh latents."""
      labels_rng, ws_rng, noise_rng, direction_rng = jax.random.split(pl_rng, 4)
      gen_labels = self._uniform_labels(labels_rng, (pl_num,))
      ws = self._training_ws(g_params, buffers, ws_rng, gen_labels, pl_num)
      synthesize = lambda ws: self._synthesize(
        g_params, buffers, ws, "random", noise_rng, differentiated_twice=True
      )
      penalty, mean = path_length_penalty(
        path_lengths(synthesize, ws, direction_rng), pl_mean, model.pl_decay
      )
      return penalty, jax.lax.stop_gradient(mean)

    # 3. G through the updated D; path length joins it when not lazy.
    def g_loss_fn(g_params):
      labels_rng, images_rng, aug_rng = jax.random.split(g_rng, 3)
      gen_labels = self._uniform_labels(labels_rng, (num,))
      fake, ws = self._training_images(g_params, buffers, images_rng, gen_labels, num)
      d_fake = self._discriminate(
        d_params, model_state, self._augment(fake, aug_rng, model_state), gen_labels, False
      )[0]
      loss, aux = self.loss_fns.generator(d_fake), {"mapped": ws[:, 0]}
      if model.pl_weight > 0 and not pl_lazy:
        aux["pl_penalty"], aux["pl_mean"] = pl_terms(g_params)
        loss = loss + model.pl_weight * aux["pl_penalty"]
      return loss, aux

    (g_loss, g_aux), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g_params)
    g_params, _, g_opt_state = apply_updates(
      g_params, g_params, state.opt_state["generator"], g_grads, self.optimizer.generator, 0.0
    )
    mapped = g_aux.pop("mapped")
    metrics.update(g_loss=g_loss, g_grad_norm=optax.global_norm(g_grads), **g_aux)
    pl_mean = g_aux.get("pl_mean", pl_mean)

    # 4. Lazy path length regularisation: its own G update every pl_interval steps.
    if pl_lazy:

      def pl_update(carry):
        g_params, g_opt_state, _ = carry

        def pl_loss(g_params):
          penalty, mean = pl_terms(g_params)
          return model.pl_weight * model.pl_interval * penalty, (penalty, mean)

        (_, (penalty, mean)), grads = jax.value_and_grad(pl_loss, has_aux=True)(g_params)
        g_params, _, g_opt_state = apply_updates(
          g_params, g_params, g_opt_state, grads, self.optimizer.generator, 0.0
        )
        return (g_params, g_opt_state, mean), model.pl_interval * penalty

      def skip_pl(carry):
        return carry, jnp.zeros(())

      due = state.step % model.pl_interval == 0
      (g_params, g_opt_state, pl_mean), metrics["pl_penalty"] = jax.lax.cond(
        due, pl_update, skip_pl, (g_params, g_opt_state, pl_mean)
      )
      metrics["pl_mean"] = pl_mean

    # 5. EMA of G, and the moving average of w.
    beta = ema_beta(num, state.step * num, model.ema_kimg, model.ema_rampup)
    g_ema = optax.incremental_update(g_params, state.ema_params["generator"], step_size=1.0 - beta)
    w_mean = jax.lax.stop_gradient(mapped).mean(axis=0)
    w_avg = buffers["mapping"]["w_avg"]
    buffers = {
      **buffers,
      "mapping": {**buffers["mapping"], "w_avg": w_mean + model.w_avg_beta * (w_avg - w_mean)},
    }
    model_state = {**model_state, G_BUFFERS: buffers, PL_MEAN: pl_mean}
    metrics.update(ema_beta=beta, **self.learning_rates(state.step))

    new_state = state.replace(
      step=state.step + 1,
      params={"generator": g_params, "discriminator": d_params},
      ema_params={"generator": g_ema, "discriminator": d_params},
      model_state=model_state,
      opt_state={"generator": g_opt_state, "discriminator": d_opt_state},
      rng=rng,
    )
    return new_state, metrics

  # --- evaluation and samples -----------------------------------------------------------------
  def image_grids(self, params, model_state, batch, rng):
    sampling = self.config.sampling
    g_params, buffers = params["generator"], model_state[G_BUFFERS]
    generate = self.sampling_generator(g_params, model_state)
    columns = sampling.grid_columns
    rows = max(sampling.grid_size // columns, 1)
    sample_rng, z_rng, start_rng, end_rng = jax.random.split(jax.random.fold_in(rng, 1), 4)
    grids = {"samples": self.sample(params, model_state, sample_rng, sampling.grid_size)}
    row_labels = self._uniform_labels(z_rng, (rows,))
    per_cell = lambda values: None if values is None else jnp.repeat(values, columns)

    def synthesize(ws):
      return self._to_value_range(self._synthesize(g_params, buffers, ws, sampling.noise_mode))

    # Interpolations: linear in w between two latents per row.
    start = self._map(
      g_params, buffers, self._latents(start_rng, rows), row_labels, sampling.truncation_psi
    )
    end = self._map(
      g_params, buffers, self._latents(end_rng, rows), row_labels, sampling.truncation_psi
    )
    weights = jnp.linspace(0.0, 1.0, columns)[None, :, None, None]
    path = start[:, None] * (1.0 - weights) + end[:, None] * weights
    grids["interpolations"] = synthesize(path.reshape(rows * columns, *start.shape[1:]))

    # Truncation: psi from 1 down to 0 across the columns.
    psi = jnp.linspace(1.0, 0.0, columns)
    z = jnp.repeat(self._latents(z_rng, rows), columns, axis=0)
    ws = jax.vmap(
      lambda z_row, label, p: self._map(g_params, buffers, z_row[None], label, p)[0],
      in_axes=(0, 0 if row_labels is not None else None, 0),
    )(z, per_cell(row_labels), jnp.tile(psi, rows))
    grids["truncation"] = synthesize(ws)

    # Style mixing: a square of grid_columns: sources on the top row and the left column.
    size = columns - 1
    crossover = sampling.mixing_crossover or self.num_ws // 2
    source_labels = self._uniform_labels(z_rng, (2 * size,))
    sources = self._map(
      g_params, buffers, self._latents(start_rng, 2 * size), source_labels, sampling.truncation_psi
    )
    row_ws, column_ws = sources[:size], sources[size:]
    mixed = mix_styles(  # cell (i, j): column j's entries before the crossover, then row i's
      jnp.broadcast_to(column_ws[None], (size, *column_ws.shape)).reshape(
        size * size, *column_ws.shape[1:]
      ),
      jnp.repeat(row_ws, size, axis=0),
      crossover,
    )
    row_images, column_images, mixed_images = jnp.split(
      synthesize(jnp.concatenate([row_ws, column_ws, mixed])), [size, 2 * size]
    )
    blank = jnp.full_like(row_images[:1], self.config.data.value_range[0])
    cells = [blank, column_images]
    for index in range(size):
      cells += [row_images[index : index + 1], mixed_images[index * size : (index + 1) * size]]
    grids["style_mixing"] = jnp.concatenate(cells)

    if self.num_classes:
      z = jnp.tile(self._latents(z_rng, columns), (self.num_classes, 1))
      class_labels = jnp.repeat(jnp.arange(self.num_classes), columns)
      grids["class_conditional"] = self._to_value_range(generate(z, class_labels))
    return grids

  # --- projection -----------------------------------------------------------------------------
  def project(self, params, model_state, targets, rng) -> Projection:
    """Projections (genjax.gan.projection, config.projection) of targets [B, R, R, C] in
    data.value_range, each on its own: a Projection with a leading batch axis, its image and
    snapshots in data.value_range (clipped), its noise maps keyed by synthesis layer. w_avg and
    w_std come from projection.w_samples mapped latents (uniform labels if conditional); the
    synthesis uses constant noise, so G(ws, noise) reproduces a projection exactly."""
    settings = ProjectionSettings.from_config(self.config.projection)
    g_params, buffers = params["generator"], model_state[G_BUFFERS]
    z_rng, labels_rng, run_rng = jax.random.split(rng, 3)
    labels = self._uniform_labels(labels_rng, (settings.w_samples,))
    latents = self._latents(z_rng, settings.w_samples)
    w_avg, w_std = w_statistics(self._map(g_params, buffers, latents, labels)[:, 0])
    layers = buffers["synthesis"]

    def synthesize(ws, noise):
      merged = {name: {**layer, "noise_const": noise[name]} for name, layer in layers.items()}
      return self._synthesize(g_params, {**buffers, "synthesis": merged}, ws[None], "const")[0]

    def project_one(target, key):
      noise_rng, project_rng = jax.random.split(key)
      keys = dict(zip(layers, jax.random.split(noise_rng, len(layers)), strict=True))
      noise = {
        name: jax.random.normal(keys[name], layer["noise_const"].shape)
        for name, layer in layers.items()
      }
      return project(synthesize, target, w_avg, w_std, noise, self.num_ws, project_rng, settings)

    keys = jax.random.split(run_rng, targets.shape[0])
    result = jax.vmap(project_one)(self._from_value_range(targets), keys)
    return dataclasses.replace(
      result,
      image=self._to_value_range(result.image),
      snapshots=self._to_value_range(result.snapshots),
    )
