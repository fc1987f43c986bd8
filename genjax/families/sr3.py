"""SR3: super-resolution by a diffusion model conditioned on the low-resolution image.

Saharia, Ho, Chan, Salimans, Fleet, Norouzi, "Image Super-Resolution via Iterative Refinement"
(SR3), arXiv:2104.07636, 2021.

The model generates a high-resolution image x [B, H, W, C] given its low-resolution version
y [B, H/s, W/s, C] (s = superres.scale). The degradation is the s x s block mean:

  y = downsample(x, s),   y[i, j] = mean of x[s i : s i + s, s j : s j + s]

(the training pairs are made from the training images by it, and `--mode=restore
--task=superres` uses the same one). The network is the diffusion UNet with 2C input channels,
and C output channels (model.out_channels is set to C):

  eps_hat(x_t, t, y) = UNet(concat([x_t, up(y)], channels), t),   up = superres.upsample to H x W

and it is trained with the diffusion objective of the process (diffusion.objective; DDPM's eps
loss by default), the same x_t = alpha_t x + sigma_t eps as the unconditional family, only the
network sees up(y):

  L = E_{x, t, eps} || eps - eps_hat(alpha_t x + sigma_t eps, t, downsample(x, s)) ||^2

Super-resolving runs the configured sampler (sampling.sampler, num_steps, eta) from pure noise
with eps_hat(., ., y), x_0_hat clipped to data.value_range at every step (sampling.clip_denoised).
Where this differs from SR3: the network is conditioned on the discrete step (our ddpm process)
rather than on a continuous noise level gamma ~ U(gamma_{t-1}, gamma_t), so the inference noise
schedule cannot be re-tuned after training; a sub-sequence of the training steps (ddim, eta 1 =
ancestral on fewer steps) is used instead.

Config (besides the diffusion family's, genjax.diffusion.settings):
  superres.scale     2 or 4: H / h of the high- and low-resolution images (H, W divisible by it)
  superres.upsample  "bicubic" (SR3) or "nearest": how y is brought to H x W for the network
  model.network      unet only; model.out_channels is set to the data's channels (0 or C accepted)
  model.num_classes  0 only (no class conditioning or guidance)
  eval.likelihood    none only (no likelihood of the conditional model is computed)
  eval.sample_metrics  empty: an sr3 model has no unconditional samples

Hooks: loss / eval_metrics "loss" (the objective above, per example, with eval randomness),
super_resolve (what --mode=restore --task=superres calls), image_grids "superres" (rows of
input shown with nearest upsampling, output, ground truth), benchmark_functions (super_resolve
at the batch's size). `sample` and `--mode=sample` refuse: use --mode=restore --task=superres.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from genjax.diffusion import objectives, settings
from genjax.diffusion.inverse import block_mean as downsample  # the degradation sr3 undoes
from genjax.diffusion.samplers import clipped_eps, network_evaluations
from genjax.families import FAMILIES
from genjax.families.diffusion import DiffusionFamily

SCALES = (2, 4)
UPSAMPLING = ("bicubic", "nearest")
NO_SAMPLES = (
  "An sr3 model generates high-resolution images from low-resolution ones and has no "
  "unconditional samples: use --mode=restore --task=superres --input=<low-resolution images> "
  "(family.super_resolve)."
)


def add_defaults(config: ml_collections.ConfigDict) -> None:
  """The diffusion family's keys plus superres.*; no likelihood evaluation."""
  settings.add_defaults(config)
  config.superres = superres = ml_collections.ConfigDict()
  superres.scale = 4  # 2 or 4: high-resolution size / low-resolution size
  superres.upsample = "bicubic"  # or "nearest": how the low-resolution image is brought to H x W
  config.eval.likelihood = "none"  # the only choice: no likelihood of the conditional model
  config.eval.vlb_timesteps = 0
  config.eval.sample_metrics = ()  # an sr3 model has no unconditional samples


def from_diffusion_config(config: ml_collections.ConfigDict, scale: int) -> ml_collections.ConfigDict:
  """The sr3 version of an unconditional diffusion config (unlocked): the same data, network,
  process, optimizer and sampler, conditioned on the image downsampled by `scale`; no likelihood
  and no sample metrics."""
  config.family = "sr3"
  config.superres = ml_collections.ConfigDict({"scale": scale, "upsample": "bicubic"})
  config.eval.likelihood = "none"
  config.eval.vlb_timesteps = 0
  config.eval.sample_metrics = ()
  return config


@FAMILIES.register("sr3")
class SR3Family(DiffusionFamily):
  """See the module docstring."""

  add_defaults = staticmethod(add_defaults)
  null_label_row = False

  def __init__(self, config, info, mesh):
    model = config.model
    if model.num_classes:
      raise ValueError(
        f"sr3 models are conditioned on the low-resolution image only: model.num_classes must be "
        f"0, got {model.num_classes} (no class conditioning or guidance)."
      )
    if model.network != "unet":
      raise ValueError(f"sr3 needs model.network='unet', got {model.network!r}.")
    if config.eval.sample_metrics:
      raise ValueError(
        "eval.sample_metrics needs unconditional samples, which an sr3 model has none of; set "
        "eval.sample_metrics=()."
      )
    super().__init__(config, info, mesh)
    self.scale = _check_superres(config.superres, self.example_shape, info.is_image)
    channels = self.example_shape[-1]
    if model.out_channels not in (0, channels):
      raise ValueError(
        f"model.out_channels={model.out_channels}: sr3's UNet outputs the data's {channels} "
        "channels (eps); leave model.out_channels at 0."
      )
    self.network = self.network.clone(out_channels=channels)

  def _check_likelihood(self) -> None:
    if self.config.eval.likelihood != "none":
      raise ValueError(
        f"eval.likelihood={self.config.eval.likelihood!r}: sr3 computes no likelihood; set "
        "eval.likelihood='none' (its default)."
      )

  # --- the conditional network --------------------------------------------------------------------
  def condition(self, low_res: jax.Array) -> jax.Array:
    """low_res [B, H/s, W/s, C] -> [B, H, W, C]: the channels the UNet sees beside x_t."""
    height, width, channels = self.example_shape
    expected = (height // self.scale, width // self.scale, channels)
    if tuple(low_res.shape[1:]) != expected:
      raise ValueError(
        f"sr3 with superres.scale={self.scale} super-resolves [B, {expected[0]}, {expected[1]}, "
        f"{channels}] images to {height}x{width}; got shape {tuple(low_res.shape)}."
      )
    shape = (low_res.shape[0], height, width, channels)
    return jax.image.resize(low_res, shape, self.config.superres.upsample)

  def _conditioned_network(self, params, low_res, train: bool = False, rng=None):
    """(x_in, network time) -> the UNet's output on concat([x_in, up(low_res)], -1)."""
    network = self._network(params, None, train=train, rng=rng)
    condition = self.condition(low_res)
    return lambda x_in, time: network(jnp.concatenate([x_in, condition], axis=-1), time)

  def eps_fn_for(self, params, low_res: jax.Array):
    """(x, t) -> eps_hat(x, t, low_res); with sampling.clip_denoised, x_0_hat is clipped to
    data.value_range at every step."""
    network = self._conditioned_network(params, low_res)
    eps = lambda x, t: self.denoiser.eps(network, x, t)
    if self.config.sampling.clip_denoised:
      eps = clipped_eps(self.process, eps, *self.config.data.value_range)
    return eps

  def eps_fn(self, params, labels=None):
    raise ValueError(
      "An sr3 network needs the low-resolution image: use eps_fn_for(params, low_res)."
    )

  # --- hooks --------------------------------------------------------------------------------------
  def init(self, rng, batch):
    x = batch["x"]
    inputs = jnp.concatenate([x, self.condition(downsample(x, self.scale))], axis=-1)
    return super().init(rng, {"x": inputs})

  def _per_example_loss(self, params, x, rng, train: bool):
    dropout_rng, loss_rng = jax.random.split(rng)
    network = self._conditioned_network(
      params, downsample(x, self.scale), train=train, rng=dropout_rng
    )
    return objectives.per_example_loss(self.denoiser, network, x, loss_rng, self.config.diffusion)

  def loss(self, params, model_state, batch, rng):
    return self._per_example_loss(params, batch["x"], rng, True).mean(), ({}, model_state)

  def eval_metrics(self, params, model_state, batch, rng):
    return {"loss": self._per_example_loss(params, batch["x"], rng, False)}

  def super_resolve(self, params, low_res: jax.Array, rng: jax.Array) -> jax.Array:
    """low_res [B, H/s, W/s, C] in data.value_range -> [B, H, W, C] in data.value_range: the
    configured sampler conditioned on low_res (batch sharded over the mesh)."""
    eps = self.eps_fn_for(params, low_res)
    sharded_eps = lambda x, t: eps(self._shard(x), t)
    return self._finish(self.sampler(sharded_eps, rng, (low_res.shape[0], *self.example_shape)))

  def sample(self, params, model_state, rng, num):
    raise ValueError(NO_SAMPLES)

  def image_grids(self, params, model_state, batch, rng):
    """The grid "superres": eval images in rows of sampling.grid_columns, each row as three: the
    low-resolution input (nearest upsampling), the super-resolved output, the ground truth."""
    sampling = self.config.sampling
    available = batch["x"].shape[0]
    columns = min(sampling.grid_columns, available)
    rows = max(min(sampling.grid_size // 3, available) // columns, 1)
    x = batch["x"][: rows * columns]
    low_res = downsample(x, self.scale)
    shown = jax.image.resize(low_res, x.shape, "nearest")
    output = self.super_resolve(params, low_res, rng)
    as_rows = lambda v: v.reshape(rows, columns, *x.shape[1:])
    triples = jnp.stack([as_rows(shown), as_rows(output), as_rows(x)], axis=1)
    return {"superres": triples.reshape(-1, *x.shape[1:])}

  def metric_conventions(self):
    diffusion, data = self.config.diffusion, self.config.data
    height, width, channels = self.example_shape
    return {
      "loss": f"the training objective ({diffusion.objective} loss, the {diffusion.reduce} over "
      f"the {height}x{width}x{channels} values) of x given its {self.scale}x{self.scale} block mean "
      f"({height // self.scale}x{width // self.scale}, shown to the network with "
      f"{self.config.superres.upsample} upsampling), averaged over examples; t and the noise "
      f"drawn with eval.seed; data on {tuple(data.value_range)}, {data.name} {data.eval_split} "
      "split"
    }

  def benchmark_functions(self, params, model_state, batch, rng):
    """super_resolve of the batch's images downsampled by superres.scale, named
    'superres_<sampler>_nfe<network evaluations per image>'."""
    sampling = self.config.sampling
    low_res = downsample(batch["x"], self.scale)
    evaluations = network_evaluations(sampling.sampler, sampling)
    name = f"superres_{sampling.sampler}" + (f"_nfe{evaluations}" if evaluations else "_adaptive")
    return {name: (self.super_resolve, (params, low_res, rng), low_res.shape[0])}


def _check_superres(
  superres: ml_collections.ConfigDict, example_shape: tuple[int, ...], is_image: bool
) -> int:
  """superres.scale after checking it, the upsampling and the image size against each other."""
  if not is_image or len(example_shape) != 3:
    raise ValueError("sr3 super-resolves images; this dataset has none.")
  if superres.scale not in SCALES:
    raise ValueError(f"superres.scale must be 2 or 4, got {superres.scale!r}.")
  if superres.upsample not in UPSAMPLING:
    raise ValueError(
      f"superres.upsample must be 'bicubic' or 'nearest', got {superres.upsample!r}."
    )
  height, width, _ = example_shape
  if height % superres.scale or width % superres.scale:
    raise ValueError(
      f"The images are {height}x{width}, not divisible by superres.scale={superres.scale}: "
      "choose a scale that divides the size, or set data.image_size to a multiple of it."
    )
  return superres.scale
