"""The score-based diffusion family: DDPM, VP / sub-VP / VE SDEs and EDM on one interface.

Config (see genjax.diffusion.settings for every key and its default):
  diffusion.process     ddpm | vp | subvp | ve | edm          (genjax.diffusion.processes)
  diffusion.objective   eps | v | dsm | edm                   (genjax.diffusion.objectives)
  model.network         unet | score_mlp; model.num_classes > 0 makes it class-conditional
  sampling.sampler      ancestral | ddim | pc | ode | heun | dpm_solver, sampling.num_steps
  sampling.guidance     classifier-free guidance weight (needs diffusion.label_dropout > 0)
  sampling.autoguidance w > 0: every network call is (1 + w) F - w F_guide, F_guide being this run's
                        checkpoint at sampling.autoguidance_step (genjax.diffusion.autoguidance)
  model.lora_rank       > 0: LoRA adapters on the dense layers, the only parameters that train
                        (genjax.lora; the network runs on the merged kernels)
  eval.likelihood       vlb (ddpm) | ode (continuous processes) | none

Hooks:
  loss          the objective (diffusion.objective, reduced per example by diffusion.reduce)
                averaged over the batch
  eval_metrics  per example: "loss" (the training objective with eval randomness), and
                bpd_vlb  ddpm: the variational bound in bits/dim over the preprocessed image
                         (MNIST padded to 32x32 counts all 1024 pixels), data on the 256 levels of
                         [-1, 1], discretized Gaussian decoder (genjax.diffusion.likelihood)
                bpd_ode  images, continuous processes: probability-flow ODE bits/dim with uniform
                         dequantization, + 8 - log2(range) (score_sde convention)
                nll_ode  points: -log p(x) in nats from the probability-flow ODE
  sample        sampling.sampler from the prior; class-conditional models get labels cycling
                through the classes (data.classes when set)
  image_grids   samples; for images also inpainting (bottom half of eval images re-generated) and
                SDEdit edits (eval images noised to sampling.edit_strength), each shown next to its
                input
EMA parameters are used for sampling and evaluation by the runner (sampling.use_ema, eval.use_ema).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genjax import lora, parallel
from genjax.diffusion import autoguidance, editing, likelihood, objectives, settings
from genjax.diffusion.processes import make_process
from genjax.diffusion.samplers import clipped_eps, make_sampler, network_evaluations
from genjax.evaluation.likelihood import eval_data_statement
from genjax.families import FAMILIES
from genjax.families.base import Family
from genjax.models.diffusion import DIFFUSION_NETWORKS


@FAMILIES.register("diffusion")
class DiffusionFamily(Family):
  """See the module docstring; config keys in genjax.diffusion.settings."""

  add_defaults = staticmethod(settings.add_defaults)
  null_label_row = True

  def __init__(self, config, info, mesh):
    super().__init__(config, info, mesh)
    settings = config.diffusion
    self.process = make_process(settings)
    # where every sampler, edit, restoration and trajectory starts (sampling.lambda_min)
    self.sampling_process = self.process.truncated(config.sampling.lambda_min)
    objectives.check_objective(self.process, settings)
    self.denoiser = objectives.Denoiser(self.process, settings.objective, settings.sigma_data)
    self.num_classes = config.model.num_classes
    if self.num_classes and self.num_classes != info.num_classes:
      raise ValueError(
        f"model.num_classes={self.num_classes} but {config.data.name} has "
        f"{info.num_classes} classes; set model.num_classes to {info.num_classes} or 0."
      )
    self._check_guidance()
    self.guide_step = self._autoguidance_step()
    if self.guide_step is not None:
      self.guide_tag = f"_autoguidance{config.sampling.autoguidance:g}by{self.guide_step}"
    self.network = DIFFUSION_NETWORKS.get(config.model.network)(config.model, self.num_classes)
    lora.check_config(config.model)
    self.sampler = make_sampler(config.sampling.sampler, self.process, config.sampling)
    self._check_likelihood()

  def _check_guidance(self) -> None:
    if self.config.sampling.guidance and not (
      self.num_classes and self.config.diffusion.label_dropout > 0
    ):
      raise ValueError(
        "sampling.guidance needs a class-conditional model trained with dropped labels: "
        "set model.num_classes and diffusion.label_dropout > 0 (e.g. 0.1)."
      )

  def _autoguidance_step(self) -> int | None:
    """The checkpoint step whose parameters guide sampling (sampling.autoguidance_step), or None."""
    sampling = self.config.sampling
    if sampling.autoguidance < 0:
      raise ValueError(f"sampling.autoguidance must be >= 0 (0: off), got {sampling.autoguidance}.")
    if not sampling.autoguidance:
      return None
    if sampling.autoguidance_step <= 0:
      raise ValueError(
        f"sampling.autoguidance={sampling.autoguidance} needs sampling.autoguidance_step: the step "
        "of an earlier checkpoint of this run that guides the sampled one (e.g. a quarter of "
        "training.num_train_steps)."
      )
    return int(sampling.autoguidance_step)

  def with_guide(self, params, guide_params):
    return autoguidance.Autoguided(params, guide_params, jnp.float32(self.config.sampling.autoguidance))

  def _check_likelihood(self) -> None:
    choice, data = self.config.eval.likelihood, self.config.data
    if choice not in ("vlb", "ode", "none"):
      raise ValueError(f"Unknown eval.likelihood {choice!r}; use vlb, ode or none.")
    if choice == "vlb":
      if not self.process.discrete:
        raise ValueError("eval.likelihood='vlb' is the DDPM bound; continuous processes use 'ode'.")
      if not self.info.is_image or tuple(data.value_range) != (-1.0, 1.0) or data.dequantize:
        raise ValueError(
          "The DDPM bound needs images on their 256 levels in [-1, 1]: set "
          "data.value_range=(-1., 1.) and data.dequantize=False (or eval.likelihood='none')."
        )
      self.bound = likelihood.DDPMBound(self.process, self.config.diffusion.model_variance)
    if choice == "ode" and self.process.discrete:
      raise ValueError("eval.likelihood='ode' needs a continuous process; ddpm uses 'vlb'.")

  # --- the network as eps_fn ----------------------------------------------------------------------
  def _network(self, params, labels, train: bool = False, rng=None):
    """(x_in, network time) -> the network's output; `Autoguided` params give the extrapolation
    (1 + w) F - w F_guide (genjax.diffusion.autoguidance), which every sampler, edit and
    restoration then uses."""
    if isinstance(params, autoguidance.Autoguided):
      return autoguidance.extrapolated(
        self._network(params.model, labels, train, rng),
        self._network(params.guide, labels, train, rng),
        params.weight,
      )
    rngs = {"dropout": rng} if train else {}
    if lora.enabled(self.config.model):
      params = lora.merge(params, lora.scale(self.config.model))

    def apply(x_in, time):
      return self.apply_network(
        self.network, {"params": params}, x_in, time, labels, train=train, rngs=rngs
      )

    return apply

  def _labelled_eps(self, params):
    def eps(x, t, labels):
      return self.denoiser.eps(self._network(params, labels if self.num_classes else None), x, t)

    return eps

  def eps_fn(self, params, labels=None):
    """(x, t) -> eps_hat with the EMA/given params, guided by sampling.guidance when conditional;
    for images with sampling.clip_denoised, x_0_hat is clipped to data.value_range at every step."""
    if self.num_classes:
      eps = editing.guided_eps(
        self._labelled_eps(params), labels, jnp.full_like(labels, self.num_classes),
        self.config.sampling.guidance,
      )
    else:
      eps = lambda x, t: self._labelled_eps(params)(x, t, None)
    if self.info.is_image and self.config.sampling.clip_denoised:
      eps = clipped_eps(self.process, eps, *self.config.data.value_range)
    return eps

  def _train_labels(self, batch, rng):
    if not self.num_classes:
      return None
    labels = batch["label"]
    drop = jax.random.bernoulli(rng, self.config.diffusion.label_dropout, labels.shape)
    return jnp.where(drop, self.num_classes, labels)

  # --- hooks --------------------------------------------------------------------------------------
  def init(self, rng, batch):
    x = batch["x"]
    labels = jnp.zeros((x.shape[0],), jnp.int32) if self.num_classes else None
    time = self.process.network_time(jnp.full((x.shape[0],), self.process.t_max, jnp.float32))
    params = self.network.init(rng, x, time, labels)["params"]
    model = self.config.model
    if lora.enabled(model):
      adapter_rng = jax.random.fold_in(rng, 1)
      params = lora.add_adapters(params, adapter_rng, model.lora_rank, model.lora_targets)
    return params, {}

  def loss(self, params, model_state, batch, rng):
    label_rng, dropout_rng, loss_rng = jax.random.split(rng, 3)
    network = self._network(
      params, self._train_labels(batch, label_rng), train=True, rng=dropout_rng
    )
    per_example = objectives.per_example_loss(
      self.denoiser, network, batch["x"], loss_rng, self.config.diffusion
    )
    return per_example.mean(), ({}, model_state)

  def eval_metrics(self, params, model_state, batch, rng):
    x = batch["x"]
    loss_rng, likelihood_rng, dequantize_rng = jax.random.split(rng, 3)
    labels = batch.get("label") if self.num_classes else None
    network = self._network(params, labels)
    metrics = {
      "loss": objectives.per_example_loss(
        self.denoiser, network, x, loss_rng, self.config.diffusion
      )
    }
    eps_fn = lambda y, t: self.denoiser.eps(network, y, t)
    choice = self.config.eval.likelihood
    if choice == "vlb":
      terms = self.bound.total(eps_fn, x, likelihood_rng, self.config.eval.vlb_timesteps)
      scale = 1.0 / (np.prod(x.shape[1:]) * likelihood.LOG2)
      metrics.update(
        bpd_vlb=terms["vlb"] * scale,
        bpd_vlb_prior=terms["prior"] * scale,
        bpd_vlb_decoder=terms["decoder"] * scale,
      )
    elif choice == "ode":
      value_range = tuple(self.config.data.value_range)
      if self.info.is_image and not self.config.data.dequantize:
        x = likelihood.dequantize(x, dequantize_rng, value_range)
      log_p = likelihood.ode_log_likelihood(
        self.process, eps_fn, x, likelihood_rng, self.config.eval, self.config.eval.trace_estimator
      )
      if self.info.is_image:
        metrics["bpd_ode"] = likelihood.bits_per_dim(log_p, int(np.prod(x.shape[1:])), value_range)
      else:
        metrics["nll_ode"] = -log_p
    return metrics

  def _sample_labels(self, num: int):
    """Labels [num] cycling through the data's classes (data.classes, else all of them)."""
    if not self.num_classes:
      return None
    classes = np.asarray(tuple(self.config.data.classes) or range(self.num_classes), np.int32)
    return jnp.asarray(classes)[jnp.arange(num) % len(classes)]

  def sample_labels(self, rng, num):
    return self._sample_labels(num)

  def _finish(self, x):
    if self.info.is_image and self.config.sampling.clip_denoised:
      low, high = self.config.data.value_range
      return jnp.clip(x, low, high)
    return x

  def _shard(self, x):
    if x.shape[0] % self.mesh.size:
      return x
    return jax.lax.with_sharding_constraint(x, parallel.batch_sharded(self.mesh))

  def sample_with(self, sampler, params, rng, num: int):
    """`num` samples [num, *example_shape] from the given sampler (batch sharded over the mesh)."""
    eps = self.eps_fn(params, self._sample_labels(num))
    sharded_eps = lambda x, t: eps(self._shard(x), t)
    return self._finish(sampler(sharded_eps, rng, (num, *self.example_shape)))

  def sample(self, params, model_state, rng, num):
    return self.sample_with(self.sampler, params, rng, num)

  def image_grids(self, params, model_state, batch, rng):
    """samples; images also get inpainting and sdedit grids: rows alternate input and output."""
    count = self.config.sampling.grid_size
    sample_rng, inpaint_rng, edit_rng = jax.random.split(rng, 3)
    grids = {"samples": self.sample(params, model_state, sample_rng, count)}
    if not self.info.is_image:
      return grids
    sampling = self.config.sampling
    columns = sampling.grid_columns
    # Whole rows of `columns` inputs, at most half the grid and at most one eval batch.
    rows = max(min(count // 2, batch["x"].shape[0]) // columns, 1)
    columns = min(columns, batch["x"].shape[0])
    num = rows * columns
    x = batch["x"][:num]
    eps = self.eps_fn(params, batch["label"][:num] if self.num_classes else None)
    height = x.shape[1]
    top_rows = (jnp.arange(height) < height // 2).astype(x.dtype)
    mask = top_rows[None, :, None, None] * jnp.ones_like(x)
    low = self.config.data.value_range[0]
    inpainted = editing.inpaint(
      self.sampling_process, eps, inpaint_rng, x, mask, sampling.edit_num_steps,
      resample_steps=sampling.inpaint_resample,
    )
    edited = editing.sdedit(
      self.sampling_process, eps, edit_rng, x, sampling.edit_strength, sampling.edit_num_steps
    )

    def interleave(inputs, outputs):
      rows = lambda v: v.reshape(-1, columns, *v.shape[1:])
      return jnp.stack([rows(inputs), rows(outputs)], axis=1).reshape(-1, *x.shape[1:])

    grids["inpainting"] = interleave(mask * x + (1 - mask) * low, self._finish(inpainted))
    grids["sdedit"] = interleave(x, self._finish(edited))
    return grids

  def metric_conventions(self):
    """The likelihoods of eval_metrics: the DDPM bound (bpd_vlb and its terms) or the
    probability-flow ODE likelihood (bpd_ode for images, nll_ode for points)."""
    ev, data = self.config.eval, self.config.data
    size = f"{data.image_size}x{data.image_size} (padding counted)" if data.image_size else "native"
    per_dim = f"bits per dimension of the preprocessed example ({size} size)"
    on_data = f"on the {eval_data_statement(data)}"
    if ev.likelihood == "vlb":
      estimate = (
        f"a {ev.vlb_timesteps}-term Monte Carlo estimate" if ev.vlb_timesteps else "all terms summed"
      )
      return {
        "bpd_vlb": f"DDPM variational bound (Ho et al. 2020), {estimate}; data on the 256 levels "
        f"of {tuple(data.value_range)} with a discretized Gaussian decoder; {per_dim}; {on_data}",
        "bpd_vlb_prior": f"the prior term KL(q(x_T|x_0) || p(x_T)); {per_dim}",
        "bpd_vlb_decoder": f"the decoder term -log p(x_0|x_1); {per_dim}",
      }
    if ev.likelihood == "ode":
      solver = f"solver {ev.ode_solver}, trace estimator {ev.trace_estimator}"
      if self.info.is_image:
        return {
          "bpd_ode": "probability-flow ODE likelihood (Song et al. 2021) of uniformly dequantized "
          f"8-bit images, -log2 p / D + 8 - log2(range width) (score_sde convention), {solver}; "
          f"{per_dim}; {on_data}"
        }
      return {
        "nll_ode": f"-log p(x) of points from the probability-flow ODE, {solver}; nats per "
        f"example; on the {data.name} {data.eval_split} split"
      }
    return {}

  def benchmark_functions(self, params, model_state, batch, rng):
    """Every sampler that fits the process, at the batch size of `batch`, with sampling.num_steps
    (names carry the network evaluations per sample, e.g. 'sample_ddim_nfe50')."""
    num = batch["x"].shape[0]
    functions = {}
    for name in ("ancestral", "ddim", "pc", "ode", "heun", "dpm_solver"):
      try:
        sampler = make_sampler(name, self.process, self.config.sampling)
      except ValueError:
        continue
      evaluations = network_evaluations(name, self.config.sampling)
      label = f"sample_{name}" + (f"_nfe{evaluations}" if evaluations else "_adaptive")
      fn = lambda params, rng, sampler=sampler: self.sample_with(sampler, params, rng, num)
      functions[label] = (fn, (params, rng), num)
    return functions
