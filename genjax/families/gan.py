"""The GAN family: adversarial training of a generator G and a discriminator (critic) D.

params = {"generator": ..., "discriminator": ...}; model_state holds D's spectral-norm
power-iteration vectors ({"spectral_norm": ...}, empty without spectral norm); opt_state =
{"generator": ..., "discriminator": ...}. ema_params["generator"] is the EMA of G
(optim.ema_decay), used for samples and evaluation; D keeps no EMA
(ema_params["discriminator"] == params["discriminator"]).

One train step (one jit-compiled function) = model.n_critic discriminator updates, then one
generator update:
  * training.batch_size is the number of REAL images a step consumes. It is split into n_critic
    disjoint slices of batch_size / n_critic, one fresh slice per critic update (as in Gulrajani
    et al. 2017, who draw a new real batch for every critic iteration); the generator update uses
    batch_size / n_critic latents. So a WGAN-GP config with 64 images per update and n_critic = 5
    sets training.batch_size = 320, and images/s of a step counts all 320.
  * D update: L_D = loss.discriminator(D(aug(x)), D(aug(G(z)))) + gradient_penalty * GP
                    + r1_gamma / 2 * R1, with G's output treated as a constant.
  * G update: L_G = loss.generator(D(aug(G(z)))) + g_ortho_reg * orthogonal_regularization(G),
    computed through D's parameters after this step's n_critic updates (alternating, not
    simultaneous, updates; tests/test_gan_mnist_mlp.py reproduces a step by hand).
  * Two time-scale learning rates: optim.lr for G and optim.d_lr for D (same optimizer kind and
    schedule; D's schedule counts its own n_critic updates per step).
  * aug is chosen by model.augment: "none" (the identity), "diffaugment" (DiffAugment, Zhao et al.
    2020, policy model.diffaugment) or "ada" (adaptive discriminator augmentation, Karras et al.
    2020, genjax.gan.ada: pipeline model.ada_pipeline, each augmentation applied with probability
    p). Both are differentiable, so G's gradient passes through them, and both apply to every
    image D sees, real or fake, so they do not leak into G's samples (ADA: while p < 0.8).
  * ADA's p lives in model_state["ada"] (checkpointed with the run, starting at 0): after every
    D update the batch mean of sign(D(aug(x))) on reals feeds genjax.gan.ada.ada_update, which every
    model.ada_interval updates moves p by sign(r_t - model.ada_target) * (images in those updates)
    / (model.ada_kimg * 1000). Logged: ada_p and ada_rt (the overfitting heuristic r_t).
  * Conditional models (model.conditional) train D on real images with their labels and on fakes
    generated for those same labels; the generator update draws labels uniformly.
  * Divergence guard: with training.max_d_loss > 0, `check_training` stops the run (keeping the
    last good checkpoint) at the first log step after some critic update's loss (the metric
    `d_loss_max`, a maximum over the logging window) exceeded it; NaN losses stop it in any case.

Sampling: z ~ N(0, I), or, with sampling.truncation = t > 0, the normal truncated to [-t, t]
(the truncation trick of Brock et al. 2019), and uniform labels; the latents of sample(rng, n) are
the first n of sample(rng, m > n) (jax's default, partitionable threefry). G's batch norm, on each
batch's own statistics in training, runs on fixed "standing statistics" (Brock et al. 2019) in
sample, image_grids and eval_metrics, so that a sample depends on its own latent and label only,
not on the rest of its batch. `standing_statistics` estimates them for the very weights that
sample (the EMA weights by default; running averages collected in training would belong to the
raw weights): G in training mode on sampling.standing_stats_samples latents z ~ N(0, I),
untruncated, with uniform labels, from the fixed key STANDING_STATS_SEED, in batches of G's
training batch (training.batch_size / model.n_critic); each batch-norm layer's per-batch means and
biased variances are averaged over the batches. This runs inside each call of those hooks (one
compiled function each, at the cost of a training-mode pass of G per standing batch); generators
without batch norm (the MLP, model.g_norm = "none") skip it. sampling.standing_stats_samples is a GAN
key (genjax.gan.settings), as only GAN generators have batch norm. Image grids: "samples" (fixed latents from
sampling.seed, so grids over training are comparable), "class_conditional" (one row per class,
shared latents per column), "interpolations" (rows walking linearly between two latents).

Config keys (genjax.gan.settings): model.network, model.latent_dim, model.g_features,
model.d_features, model.d_downsample, model.g_norm, model.d_norm, model.d_pooling,
model.spectral_norm, model.leaky_slope, model.conditional, model.loss, model.n_critic,
model.gradient_penalty, model.r1_gamma, model.g_ortho_reg, model.augment, model.diffaugment,
model.ada_pipeline, model.ada_target, model.ada_interval, model.ada_kimg, optim.d_lr,
training.max_d_loss, sampling.truncation, sampling.standing_stats_samples.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.families import FAMILIES
from genjax.families.base import Family
from genjax.gan import settings
from genjax.gan.ada import ada_augment, ada_init_state, ada_update, parse_pipeline
from genjax.gan.diffaugment import DEFAULT_DIFFAUGMENT_POLICY, diff_augment, parse_policy
from genjax.gan.losses import LOSSES
from genjax.gan.regularizers import gradient_penalty, orthogonal_regularization, r1_penalty
from genjax.models.gan import GAN_NETWORKS
from genjax.models.spectral_norm import SPECTRAL_COLLECTION
from genjax.optim import make_optimizer
from genjax.train_state import TrainState, apply_updates, ema_decay_at

AUGMENTS = ("none", "diffaugment", "ada")  # model.augment
ADA_STATE = "ada"  # model_state key of ADA's p and r_t accumulators (genjax.gan.ada.AdaState)
STANDING_STATS_SEED = 0  # the key of the latents that estimate G's standing batch-norm statistics


class GANOptimizer(NamedTuple):
  """The two optimizers; init(params) gives {"generator": ..., "discriminator": ...} states."""

  generator: optax.GradientTransformation
  discriminator: optax.GradientTransformation

  def init(self, params: dict[str, Any]) -> dict[str, Any]:
    return {
      "generator": self.generator.init(params["generator"]),
      "discriminator": self.discriminator.init(params["discriminator"]),
    }


@FAMILIES.register("gan")
class GANFamily(Family):
  """See the module docstring for the training scheme; config keys in genjax.gan.settings."""

  add_defaults = staticmethod(settings.add_defaults)
  owned_state: ClassVar[dict[str, str]] = {SPECTRAL_COLLECTION: "discriminator"}

  def __init__(self, config, info, mesh):
    model = config.model
    self.loss_fns = LOSSES.get(model.loss)
    if model.n_critic < 1:
      raise ValueError(f"model.n_critic must be >= 1, got {model.n_critic}.")
    if config.training.batch_size % model.n_critic:
      raise ValueError(
        f"training.batch_size={config.training.batch_size} (real images per step) must be a "
        f"multiple of model.n_critic={model.n_critic}: each critic update takes batch_size / "
        "n_critic of them."
      )
    if model.conditional and info.num_classes == 0:
      raise ValueError(
        f"model.conditional=True needs class labels, but data.name={config.data.name!r} has none "
        "(num_classes == 0). Use model.conditional=False, or a labelled dataset (e.g. mnist, "
        "cifar10, 8gaussians, 25gaussians)."
      )
    if model.gradient_penalty > 0 and model.d_norm == "batch" and model.network == "dcgan":
      raise ValueError(
        "A gradient penalty needs a critic whose examples do not interact: set model.d_norm to "
        "'layer' or 'none' instead of 'batch' (Gulrajani et al. 2017, Sec. 4)."
      )
    if model.augment not in AUGMENTS:
      raise ValueError(f"Unknown model.augment {model.augment!r}; use {', '.join(AUGMENTS)}.")
    if model.augment != "none" and not info.is_image:
      raise ValueError(
        f"model.augment={model.augment!r} needs images; data.name={config.data.name!r} has points. "
        "Set model.augment='none'."
      )
    if model.diffaugment and model.augment != "diffaugment":
      raise ValueError(
        f"model.diffaugment={model.diffaugment!r} is DiffAugment's policy, which applies only with "
        f"model.augment='diffaugment' (model.augment is {model.augment!r}). Set "
        "--config.model.augment=diffaugment, or model.diffaugment=''."
      )
    self.diffaugment_policy = ()
    if model.augment == "diffaugment":
      self.diffaugment_policy = parse_policy(model.diffaugment or DEFAULT_DIFFAUGMENT_POLICY)
    self.ada_pipeline = parse_pipeline(model.ada_pipeline) if model.augment == "ada" else ()
    if model.augment == "ada" and (model.ada_interval < 1 or model.ada_kimg <= 0):
      raise ValueError(
        f"ADA needs model.ada_interval >= 1 and model.ada_kimg > 0, got {model.ada_interval} and "
        f"{model.ada_kimg}."
      )
    self.num_classes = info.num_classes if model.conditional else 0
    super().__init__(config, info, mesh)
    self.generator, self.discriminator = GAN_NETWORKS.get(model.network)(
      model, self.example_shape, self.num_classes, info.is_image
    )
    z = jax.ShapeDtypeStruct((1, model.latent_dim), jnp.float32)
    labels = jax.ShapeDtypeStruct((1,), jnp.int32) if self.num_classes else None
    g_variables = jax.eval_shape(self.generator.init, jax.random.key(0), z, labels)
    self.generator_batch_norm = "batch_stats" in g_variables
    if self.generator_batch_norm and config.sampling.standing_stats_samples < 1:
      raise ValueError(
        "sampling.standing_stats_samples must be >= 1 for a generator with batch norm, got "
        f"{config.sampling.standing_stats_samples}."
      )

  # --- optimizers -----------------------------------------------------------------------------
  def _d_updates(self) -> int:
    return self.config.training.num_train_steps * self.config.model.n_critic

  def make_optimizer(self):
    """G's optimizer at optim.lr over num_train_steps updates, D's at optim.d_lr over its n_critic
    updates per step; the logged rates are "lr" (G) and "d_lr" (D)."""
    optim, steps = self.config.optim, self.config.training.num_train_steps
    g_optimizer, g_schedule = make_optimizer(optim, steps, lr=optim.lr, path_prefix="generator/")
    d_optimizer, d_schedule = make_optimizer(
      optim, self._d_updates(), lr=optim.d_lr, path_prefix="discriminator/"
    )
    accumulate, n_critic = max(optim.accumulate_steps, 1), self.config.model.n_critic

    def learning_rates(step: jax.Array) -> dict[str, jax.Array]:
      return {"lr": g_schedule(step // accumulate), "d_lr": d_schedule(step * n_critic // accumulate)}

    return GANOptimizer(generator=g_optimizer, discriminator=d_optimizer), learning_rates

  # --- networks -------------------------------------------------------------------------------
  def _labels(self, batch: dict[str, jax.Array]) -> jax.Array | None:
    return batch["label"] if self.num_classes else None

  def _uniform_labels(self, rng: jax.Array, shape: tuple[int, ...]) -> jax.Array | None:
    """Class ids of `shape` uniform over the data's classes (data.classes, else all of them);
    None when unconditional."""
    if not self.num_classes:
      return None
    classes = np.asarray(tuple(self.config.data.classes) or range(self.num_classes), np.int32)
    return jnp.asarray(classes)[jax.random.randint(rng, shape, 0, len(classes))]

  def sample_labels(self, rng, num):
    return self._uniform_labels(jax.random.split(rng)[1], (num,))

  def init(self, rng, batch):
    g_rng, d_rng = jax.random.split(rng)
    z = jnp.zeros((batch["x"].shape[0], self.config.model.latent_dim))
    labels = self._labels(batch)
    g_variables = self.generator.init(g_rng, z, labels)
    d_variables = self.discriminator.init(d_rng, batch["x"], labels, update_stats=False)
    model_state = {k: v for k, v in d_variables.items() if k == SPECTRAL_COLLECTION}
    if self.ada_pipeline:
      model_state[ADA_STATE] = ada_init_state()
    return {"generator": g_variables["params"], "discriminator": d_variables["params"]}, model_state

  def _latents(self, rng: jax.Array, num: int, truncation: float = 0.0) -> jax.Array:
    shape = (num, self.config.model.latent_dim)
    if truncation > 0:
      return jax.random.truncated_normal(rng, -truncation, truncation, shape)
    return jax.random.normal(rng, shape)

  def _sampling_latents(self, rng: jax.Array, num: int) -> jax.Array:
    """z [num, latent_dim] for samples and evaluation: N(0, I), truncated to +-sampling.truncation
    when that is > 0."""
    return self._latents(rng, num, self.config.sampling.truncation)

  def _generate(self, g_params, z: jax.Array, labels: jax.Array | None) -> jax.Array:
    """G(z, labels) with batch norm on this batch's statistics (training); [B, *example_shape]."""
    out, _ = self.apply_network(
      self.generator, {"params": g_params}, z, labels, mutable=["batch_stats"]
    )
    return out

  def standing_latents(self) -> tuple[jax.Array, jax.Array | None]:
    """The fixed latents of the standing statistics: z [K, b, latent_dim] ~ N(0, I) and labels
    [K, b] uniform (None when unconditional), from key STANDING_STATS_SEED; b = training.batch_size
    / model.n_critic (G's training batch), K = ceil(sampling.standing_stats_samples / b)."""
    batch = self.config.training.batch_size // self.config.model.n_critic
    num_batches = -(-self.config.sampling.standing_stats_samples // batch)
    z_rng, label_rng = jax.random.split(jax.random.key(STANDING_STATS_SEED))
    z = self._latents(z_rng, num_batches * batch).reshape(num_batches, batch, -1)
    return z, self._uniform_labels(label_rng, (num_batches, batch))

  def standing_statistics(self, g_params) -> dict[str, Any]:
    """G's batch-norm statistics for sampling with g_params, its "batch_stats" collection: each
    layer's `mean` and `var` [C] are the averages over the K batches of `standing_latents` of that
    batch's mean and biased variance of the layer's input, with G in training mode (as in
    training, each batch also normalizes the earlier layers with its own statistics)."""

    def batch_statistics(latents):
      _, variables = self.apply_network(
        self.generator, {"params": g_params}, *latents, mutable=["batch_stats"]
      )
      return variables["batch_stats"]

    per_batch = jax.lax.map(batch_statistics, self.standing_latents())
    return jax.tree.map(lambda values: values.mean(axis=0), per_batch)

  def sampling_generator(
    self, g_params, model_state
  ) -> Callable[[jax.Array, jax.Array | None], jax.Array]:
    """(z [B, latent_dim], labels [B] or None) -> G(z, labels) [B, *example_shape] with batch norm
    on the standing statistics of g_params (computed once, here), so each example depends on its
    own z and label only; without batch norm in G, G itself. (model_state holds no generator
    state here; StyleGAN2's holds G's buffers.)"""
    del model_state
    if not self.generator_batch_norm:
      return functools.partial(self._generate, g_params)
    variables = {"params": g_params, "batch_stats": self.standing_statistics(g_params)}
    return functools.partial(
      self.apply_network, self.generator, variables, use_running_average=True
    )

  def _discriminate(
    self, d_params, model_state, x, labels, update_stats: bool
  ) -> tuple[jax.Array, Any]:
    """D(x, labels) [B] and the model_state with the power-iteration vectors it moved."""
    network_state = {k: v for k, v in model_state.items() if k != ADA_STATE}
    logits, updates = self.apply_network(
      self.discriminator,
      {"params": d_params, **network_state},
      x,
      labels,
      update_stats=update_stats,
      mutable=["batch_stats", SPECTRAL_COLLECTION],
    )
    moved = {k: v for k, v in updates.items() if k == SPECTRAL_COLLECTION}
    return logits, {**model_state, **moved}

  def _augment(self, x: jax.Array, rng: jax.Array, model_state) -> jax.Array:
    """model.augment applied to images D is about to see (ADA with the p of model_state)."""
    if self.diffaugment_policy:
      return diff_augment(x, rng, self.diffaugment_policy)
    if self.ada_pipeline:
      return ada_augment(x, rng, model_state[ADA_STATE]["p"], self.ada_pipeline)
    return x

  def _to_value_range(self, x: jax.Array) -> jax.Array:
    """Generator images in [-1, 1] -> data.value_range (points are left as they are)."""
    if not self.info.is_image:
      return x
    low, high = self.config.data.value_range
    return low + (high - low) * (x + 1.0) / 2.0

  def _from_value_range(self, x: jax.Array) -> jax.Array:
    if not self.info.is_image:
      return x
    low, high = self.config.data.value_range
    return (x - low) / (high - low) * 2.0 - 1.0

  # --- losses ---------------------------------------------------------------------------------
  def discriminator_loss(self, d_params, g_params, model_state, batch, rng):
    """L_D on one critic slice {"x" [b, ...], "label" [b]} -> (loss, (metrics, model_state))."""
    model = self.config.model
    z_rng, real_aug_rng, fake_aug_rng, eps_rng = jax.random.split(rng, 4)
    real = self._from_value_range(batch["x"])
    labels = self._labels(batch)
    fake = jax.lax.stop_gradient(
      self._generate(g_params, self._latents(z_rng, real.shape[0]), labels)
    )
    real = self._augment(real, real_aug_rng, model_state)
    fake = self._augment(fake, fake_aug_rng, model_state)
    d_real, model_state = self._discriminate(d_params, model_state, real, labels, update_stats=True)
    d_fake, model_state = self._discriminate(d_params, model_state, fake, labels, update_stats=True)
    adversarial = self.loss_fns.discriminator(d_real, d_fake)
    loss = adversarial
    metrics = {"d_adversarial": adversarial, "d_real": d_real.mean(), "d_fake": d_fake.mean(),
               "d_real_sign": jnp.sign(d_real).mean()}

    def critic(x):
      return self._discriminate(d_params, model_state, x, labels, update_stats=False)[0]

    if model.gradient_penalty > 0:
      eps = jax.random.uniform(eps_rng, (real.shape[0],))
      metrics["gradient_penalty"] = gradient_penalty(critic, real, fake, eps)
      loss = loss + model.gradient_penalty * metrics["gradient_penalty"]
    if model.r1_gamma > 0:
      metrics["r1"] = r1_penalty(critic, real)
      loss = loss + 0.5 * model.r1_gamma * metrics["r1"]
    return loss, (metrics, model_state)

  def generator_loss(self, g_params, d_params, model_state, rng, num: int):
    """L_G for `num` fresh latents (labels uniform when conditional); returns (loss, metrics)."""
    z_rng, label_rng, aug_rng = jax.random.split(rng, 3)
    labels = self._uniform_labels(label_rng, (num,))
    fake = self._generate(g_params, self._latents(z_rng, num), labels)
    fake = self._augment(fake, aug_rng, model_state)
    d_fake, _ = self._discriminate(d_params, model_state, fake, labels, update_stats=False)
    adversarial = self.loss_fns.generator(d_fake)
    loss, metrics = adversarial, {"g_adversarial": adversarial}
    if self.config.model.g_ortho_reg > 0:
      metrics["g_ortho"] = orthogonal_regularization(g_params)
      loss = loss + self.config.model.g_ortho_reg * metrics["g_ortho"]
    return loss, metrics

  # --- the step -------------------------------------------------------------------------------
  def train_step(self, state: TrainState, batch) -> tuple[TrainState, dict[str, jax.Array]]:
    n_critic = self.config.model.n_critic
    per_update = batch["x"].shape[0] // n_critic
    rng, d_rng, g_rng = jax.random.split(state.rng, 3)

    # Slice k takes rows k, k + n, k + 2n, ...: with the batch sharded over the mesh in contiguous
    # blocks, every critic slice then stays spread over all devices.
    def critic_slices(values):
      return values.reshape(per_update, n_critic, *values.shape[1:]).swapaxes(0, 1)

    slices = {key: critic_slices(batch[key]) for key in ("x", "label") if key in batch}
    g_params = state.params["generator"]

    def critic_update(carry, critic_batch, key):
      d_params, d_opt_state, model_state = carry
      grad_fn = jax.value_and_grad(self.discriminator_loss, has_aux=True)
      (loss, (metrics, model_state)), grads = grad_fn(
        d_params, g_params, model_state, critic_batch, key
      )
      d_params, _, d_opt_state = apply_updates(
        d_params, d_params, d_opt_state, grads, self.optimizer.discriminator, 0.0
      )
      metrics = {"d_loss": loss, **metrics, "d_grad_norm": optax.global_norm(grads)}
      if self.ada_pipeline:
        model = self.config.model
        ada_state, metrics["ada_rt"] = ada_update(
          model_state[ADA_STATE], metrics["d_real_sign"], target=model.ada_target,
          interval=model.ada_interval, images_per_update=per_update, speed_kimg=model.ada_kimg,
        )
        model_state = {**model_state, ADA_STATE: ada_state}
        metrics["ada_p"] = ada_state["p"]
      return (d_params, d_opt_state, model_state), metrics

    carry = (state.params["discriminator"], state.opt_state["discriminator"], state.model_state)
    # A Python loop, unrolled at trace time: XLA:CPU runs the convolutions of a lax.scan/while body
    # about 13x slower (measured on the DCGAN step, even with unroll=True); n_critic is small.
    per_update_metrics = []
    for index, key in enumerate(jax.random.split(d_rng, n_critic)):
      critic_batch = {name: values[index] for name, values in slices.items()}
      carry, metrics = critic_update(carry, critic_batch, key)
      per_update_metrics.append(metrics)
    d_params, d_opt_state, model_state = carry
    d_metrics = jax.tree.map(lambda *values: jnp.stack(values), *per_update_metrics)

    grad_fn = jax.value_and_grad(self.generator_loss, has_aux=True)
    (g_loss, g_metrics), g_grads = grad_fn(g_params, d_params, model_state, g_rng, per_update)
    ema_decay = ema_decay_at(self.config.optim, state.step)  # one G update per step
    g_params, g_ema, g_opt_state = apply_updates(
      g_params, state.ema_params["generator"], state.opt_state["generator"], g_grads,
      self.optimizer.generator, ema_decay,
    )

    metrics = {name: values.mean() for name, values in d_metrics.items()}
    metrics.update(
      g_loss=g_loss,
      **g_metrics,
      g_grad_norm=optax.global_norm(g_grads),
      **self.learning_rates(state.step),
    )
    metrics["d_loss_max"] = d_metrics["d_loss"].max()
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
  def eval_metrics(self, params, model_state, batch, rng):
    """Per example: D's logits on the real example (d_real) and on a generated one for the same
    label (d_fake), generated as in `sample`."""
    labels = self._labels(batch)
    z = self._sampling_latents(rng, batch["x"].shape[0])
    fake = self.sampling_generator(params["generator"], model_state)(z, labels)
    real = self._from_value_range(batch["x"])
    metrics = {
      "d_real": self._discriminate(params["discriminator"], model_state, real, labels, False)[0],
      "d_fake": self._discriminate(params["discriminator"], model_state, fake, labels, False)[0],
    }
    return metrics

  def sample(self, params, model_state, rng, num):
    return self._sample(self.sampling_generator(params["generator"], model_state), rng, num)

  def _sample(self, generate: Callable, rng: jax.Array, num: int) -> jax.Array:
    """`num` samples [num, *example_shape] in data.value_range of `sampling_generator` G."""
    z_rng, _ = jax.random.split(rng)
    z = self._sampling_latents(z_rng, num)
    return self._to_value_range(generate(z, self.sample_labels(rng, num)))

  def check_training(self, summary: dict[str, float]) -> str | None:
    max_d_loss = self.config.training.max_d_loss
    if max_d_loss > 0 and summary.get("d_loss_max", 0.0) > max_d_loss:
      return (
        f"the discriminator loss reached {summary['d_loss_max']:.4g}, above training.max_d_loss="
        f"{max_d_loss:g}: the GAN is diverging. Lower optim.d_lr or optim.lr, add a regularizer "
        "(model.gradient_penalty, model.r1_gamma, model.spectral_norm), or raise "
        "training.max_d_loss (0 disables the check)"
      )
    return None

  def image_grids(self, params, model_state, batch, rng):
    generate = self.sampling_generator(params["generator"], model_state)
    grids = {"samples": self._sample(generate, rng, self.config.sampling.grid_size)}
    if not self.info.is_image:
      return grids
    columns = self.config.sampling.grid_columns
    truncation = self.config.sampling.truncation
    z_rng, start_rng, end_rng = jax.random.split(jax.random.fold_in(rng, 1), 3)
    if self.num_classes:
      z = jnp.tile(self._latents(z_rng, columns, truncation), (self.num_classes, 1))
      labels = jnp.repeat(jnp.arange(self.num_classes), columns)
      grids["class_conditional"] = self._to_value_range(generate(z, labels))
    rows = max(self.config.sampling.grid_size // columns, 1)
    start, end = (
      self._latents(start_rng, rows, truncation),
      self._latents(end_rng, rows, truncation),
    )
    weights = jnp.linspace(0.0, 1.0, columns)[None, :, None]
    path = (start[:, None] * (1.0 - weights) + end[:, None] * weights).reshape(rows * columns, -1)
    labels = jnp.repeat(jnp.arange(rows) % self.num_classes, columns) if self.num_classes else None
    grids["interpolations"] = self._to_value_range(generate(path, labels))
    return grids

  def benchmark_functions(self, params, model_state, batch, rng):
    """Sampling a batch of images from the EMA generator (the train step is timed already)."""
    num = batch["x"].shape[0]
    return {"sample": (functools.partial(self.sample, num=num), (params, model_state, rng), num)}

  def parameter_groups(self, params):
    return {"generator": params["generator"], "discriminator": params["discriminator"]}
