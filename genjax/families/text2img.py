"""Text-to-image latent diffusion: a frozen text encoder, a frozen autoencoder, a denoiser in between.

Rombach, Blattmann, Lorenz, Esser, Ommer, "High-Resolution Image Synthesis with Latent Diffusion
Models", CVPR 2022; the denoiser is a DiT (Peebles & Xie 2023) with cross-attention, or the UNet
with cross-attention (model.network, genjax.models.diffusion); classifier-free guidance (Ho &
Salimans 2022).

Stage 1 (config.autoencoder): a KL-regularized autoencoder of the VAE family, trained by its own
config (autoencoder.config, e.g. configs/autoencoder_mnist.py) in autoencoder.workdir (default
<workdir>/autoencoder; --mode=train trains it first when it has not finished) and frozen here:

  z = s * mean(q(z | x))   [B, h, w, c]     s = autoencoder.latent_scale, or 1/std(z) as stage 1's
                                            last evaluation measured it (eval/latent_scale)
  x = mean(p(x | z / s))   [B, H, W, C]     clipped to data.value_range

Text (data.captions, genjax.text.conditioning): every training image's caption, encoded once by
the frozen MiniLM (genjax.text.encoder), reaches the denoiser as c = {tokens [B, L, 384],
mask [B, L], pooled [B, 384]}. With probability text.prompt_dropout a caption is replaced by the
empty prompt's encoding c_0 = encode(""), so one network learns eps(z_t, t, c) and eps(z_t, t, c_0).

Stage 2 is the diffusion family on z, with its processes, objectives and samplers unchanged:

  L = E_{x, c, t, eps} || eps - eps_hat(alpha_t z + sigma_t eps, t, c) ||^2    (diffusion.objective)
  sampling: eps_w(z, t) = (1 + w) eps_hat(z, t, c) - w eps_hat(z, t, c_0),  w = sampling.guidance
            (w = 0: the conditional model; the null prompt c_0 alone: the unconditional model);
            any sampling.sampler draws z, the decoder gives the image.

Hooks: loss (above), eval_metrics "loss" (the objective on the eval split, whose captions use the
held-out templates and phrasings), sample (text.sample_prompts, or the dataset's default prompts,
cycled), sample_labels (the digit each default MNIST prompt names, so eval.sample_metrics
"mnist_accuracy" measures prompt following), generate (what --mode=generate calls), image_grids
(samples: rows of the sample prompts), benchmark_functions (every sampler, with guidance).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath

from genjax.config import load_config
from genjax.diffusion import objectives, settings
from genjax.diffusion.editing import guided_eps
from genjax.families import FAMILIES, get_family
from genjax.families.diffusion import DiffusionFamily
from genjax.paths import as_path
from genjax.text import conditioning
from genjax.text.encoder import TextEmbeddings

TEXT_WIDTH = 384  # all-MiniLM-L6-v2's hidden size: model.context_dim
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DATA_LOCATION_KEYS = ("manual_dir", "data_dir")
AUTOENCODER_DATA_KEYS = ("name", "image_size", "value_range", "binarize", "dequantize", "synthetic_shape")


def add_defaults(config: ml_collections.ConfigDict) -> None:
  """The diffusion family's keys, a DiT with cross-attention, captions, autoencoder.* and text.*."""
  settings.add_defaults(config)
  config.model.network = "dit"
  config.model.context_dim = TEXT_WIDTH
  data = config.data
  data.value_range = (0.0, 1.0)  # the VAE family's pixels: stage 1 encodes these
  data.captions = "mnist_attributes"  # genjax.text.conditioning.CAPTIONERS
  data.caption_length = 24  # tokens per caption, [CLS] and [SEP] included (longer ones truncated)
  data.text_encoder = ""  # folder of the MiniLM files; "": scripts/get_text_encoder.py's folder
  config.autoencoder = ae = ml_collections.ConfigDict()
  ae.config = "autoencoder_mnist.py"  # stage 1's config: a path, or a file name in configs/ [:arg]
  ae.workdir = ""  # stage 1's workdir; "": <workdir>/autoencoder
  ae.step = 0  # stage 1's checkpoint; 0: its latest
  ae.use_ema = True
  ae.latent_scale = 0.0  # s; 0: stage 1's measured eval/latent_scale
  config.text = text = ml_collections.ConfigDict()
  text.prompt_dropout = 0.1  # training captions replaced by the empty prompt (guidance)
  text.sample_prompts = ()  # prompts of the sample grids and metrics; (): the data's defaults
  config.sampling.clip_denoised = False  # latents have no value range; images are clipped
  config.eval.likelihood = "none"


def _autoencoder_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Stage 1's config from autoencoder.config (a path, or a file of configs/, with :arg)."""
  file_name, _, arg = config.autoencoder.config.partition(":")
  path = Path(file_name)
  if not path.is_file() and (CONFIG_DIR / file_name).is_file():
    path = CONFIG_DIR / file_name
  if not path.is_file():
    raise FileNotFoundError(
      f"autoencoder.config={config.autoencoder.config!r}: no such config file (give a path, or a "
      f"file name in {CONFIG_DIR})."
    )
  stage1 = load_config(f"{path}:{arg}" if arg else str(path))
  for key in DATA_LOCATION_KEYS:  # the same data, read from where this run reads it
    stage1.data[key] = config.data[key]
  if stage1.family != "vae":
    raise ValueError(f"autoencoder.config must be a vae config; {path} is a {stage1.family} config.")
  different = [
    key for key in AUTOENCODER_DATA_KEYS
    if tuple(np.atleast_1d(stage1.data[key])) != tuple(np.atleast_1d(config.data[key]))
  ]
  if different:
    detail = ", ".join(f"data.{k}: {stage1.data[k]!r} vs {config.data[k]!r}" for k in different)
    raise ValueError(
      f"The autoencoder was trained on other images than these ({detail}): use the same data "
      "settings in both stages."
    )
  return stage1


def _finished_evaluation(workdir: epath.Path, stage1: ml_collections.ConfigDict) -> epath.Path:
  return workdir / f"eval_{stage1.training.num_train_steps}.json"


def _latest_eval_json(workdir: epath.Path, step: int | None) -> dict:
  files = sorted(workdir.glob("eval_*.json"), key=lambda p: int(p.stem.split("_")[1]))
  if step is not None:
    files = [p for p in files if int(p.stem.split("_")[1]) == step]
  if not files:
    raise FileNotFoundError(
      f"No evaluation of the autoencoder in {workdir} gives its latent scale: run "
      f"--mode=eval on it, or set autoencoder.latent_scale."
    )
  return json.loads(files[-1].read_text())


def load_autoencoder_params(config: ml_collections.ConfigDict, stage1: ml_collections.ConfigDict):
  """(stage 1's frozen parameters, the latent scale s) from autoencoder.workdir and .step."""
  from genjax import trainer  # the runner imports the families

  ae = config.autoencoder
  workdir = as_path(ae.workdir)
  try:
    experiment, state, step = trainer.restore_for_inference(stage1, workdir, ae.step or None)
  except FileNotFoundError:
    raise FileNotFoundError(
      f"No trained autoencoder in {workdir}: train stage 1 first (--mode=train with this config "
      "trains it there), or set autoencoder.workdir to a trained one."
    ) from None
  experiment.checkpointer.close()
  params = state.ema_params if ae.use_ema else state.params
  scale = ae.latent_scale or _latest_eval_json(workdir, ae.step or None)["metrics"]["eval/latent_scale"]
  logging.info("Autoencoder: %s at step %d, scale %.4f.", workdir, step, scale)
  return params, float(scale)


@FAMILIES.register("text2img")
class Text2ImgFamily(DiffusionFamily):
  """See the module docstring."""

  add_defaults = staticmethod(add_defaults)
  null_label_row = False

  @staticmethod
  def prepare(config: ml_collections.ConfigDict, workdir: epath.PathLike, train: bool) -> None:
    """autoencoder.workdir defaults to <workdir>/autoencoder; in training, stage 1 is trained
    there first unless its final evaluation exists (an interrupted stage 1 resumes)."""
    from genjax import trainer

    if not config.autoencoder.workdir:
      config.autoencoder.workdir = str(as_path(workdir) / "autoencoder")
    stage1 = _autoencoder_config(config)
    stage1_dir = as_path(config.autoencoder.workdir)
    if train and not _finished_evaluation(stage1_dir, stage1).exists():
      logging.info("Training stage 1 (%s) in %s.", config.autoencoder.config, stage1_dir)
      result = trainer.train_and_evaluate(stage1, stage1_dir)
      if result.get("preempted"):
        raise trainer.TrainingHalted("Preempted while training the autoencoder; run again to resume.")

  def __init__(self, config, info, mesh):
    model = config.model
    if model.num_classes:
      raise ValueError("text2img is conditioned on text: set model.num_classes=0.")
    if model.context_dim != TEXT_WIDTH:
      raise ValueError(f"model.context_dim must be the text encoder's width, {TEXT_WIDTH}.")
    if config.sampling.clip_denoised:
      raise ValueError("sampling.clip_denoised clips pixels; latents have no range: set it False.")
    if config.eval.likelihood != "none":
      raise ValueError("text2img computes no likelihood: set eval.likelihood='none'.")
    if not config.data.captions:
      raise ValueError("text2img trains on captioned images: set data.captions.")
    super().__init__(config, info, mesh)
    self.stage1_config = _autoencoder_config(config)
    self.autoencoder = get_family("vae")(self.stage1_config, info, mesh)
    self.image_shape = self.example_shape
    self.example_shape = tuple(self.autoencoder.latent_shape)  # what the samplers draw
    self.autoencoder_params = self.latent_scale = None
    self.null_text = self.sample_text = self.prompt_labels = None
    if config.autoencoder.workdir:  # bound to a run (genjax.trainer calls prepare); not in summaries
      self._load_frozen_parts()

  def _load_frozen_parts(self) -> None:
    """Stage 1's parameters and scale, the empty prompt's and the sample prompts' encodings."""
    config = self.config
    self.autoencoder_params, self.latent_scale = load_autoencoder_params(config, self.stage1_config)
    self.null_text = self._constant_text(self.encode_prompts([""]))
    prompts, labels = (
      (list(config.text.sample_prompts), None) if config.text.sample_prompts
      else conditioning.default_prompts(config.data.captions)
    )
    self.sample_text = self._constant_text(self.encode_prompts(prompts))
    self.prompt_labels = None if labels is None else jnp.asarray(labels, jnp.int32)

  def _check_guidance(self) -> None:
    if self.config.sampling.guidance and not self.config.text.prompt_dropout > 0:
      raise ValueError(
        "sampling.guidance needs a model trained with dropped prompts: set text.prompt_dropout > 0 "
        "(e.g. 0.1)."
      )

  # --- text -------------------------------------------------------------------------------------
  def encode_prompts(self, prompts: list[str]) -> TextEmbeddings:
    """The frozen encoder's embeddings of `prompts` at data.caption_length tokens (cached)."""
    data = self.config.data
    return conditioning.text_encoder(data.text_encoder, data.caption_length).encode(prompts)

  @staticmethod
  def _as_labels(tokens, mask, pooled) -> dict[str, jax.Array]:
    """The network's text labels {tokens, mask, pooled}, all float32."""
    return {name: jnp.asarray(value, jnp.float32)
            for name, value in (("tokens", tokens), ("mask", mask), ("pooled", pooled))}

  @classmethod
  def _constant_text(cls, embeddings: TextEmbeddings) -> dict[str, jax.Array]:
    return cls._as_labels(embeddings.tokens, embeddings.mask, embeddings.pooled)

  @classmethod
  def batch_text(cls, batch) -> dict[str, jax.Array]:
    """The batch's caption encodings as the network's text labels."""
    return cls._as_labels(batch["text_tokens"], batch["text_mask"], batch["text_pooled"])

  def null_like(self, text: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The empty prompt's encoding, repeated for each of text's rows."""
    rows = text["pooled"].shape[0]
    return jax.tree.map(lambda v: jnp.broadcast_to(v, (rows, *v.shape[1:])), self.null_text)

  def _train_labels(self, batch, rng):
    text = self.batch_text(batch)
    drop = jax.random.bernoulli(rng, self.config.text.prompt_dropout, (text["pooled"].shape[0],))
    null = self.null_like(text)
    return jax.tree.map(
      lambda c, n: jnp.where(drop.reshape(-1, *(1,) * (c.ndim - 1)), n, c), text, null
    )

  # --- latents ------------------------------------------------------------------------------------
  def encode_images(self, x: jax.Array) -> jax.Array:
    """x [B, H, W, C] in data.value_range -> z = s * posterior mean [B, h, w, c] (frozen)."""
    mean, _ = self.autoencoder._encode(self.autoencoder_params, x)
    return jax.lax.stop_gradient(mean * self.latent_scale)

  def decode_latents(self, z: jax.Array) -> jax.Array:
    """z [B, h, w, c] -> images [B, H, W, C]: the decoder's mean of z / s, clipped to the range."""
    out = self.autoencoder._decode(self.autoencoder_params, z / self.latent_scale)
    low, high = self.config.data.value_range
    return jnp.clip(self.autoencoder.likelihood.mean(out), low, high)

  # --- the network as eps_fn ----------------------------------------------------------------------
  def _labelled_eps(self, params):
    def eps(x, t, text):
      return self.denoiser.eps(self._network(params, text), x, t)

    return eps

  def eps_fn(self, params, labels=None, guidance: float | None = None):
    """(z, t) -> the guided eps_hat for the text `labels` ({tokens, mask, pooled}, [B] rows);
    guidance defaults to sampling.guidance."""
    weight = self.config.sampling.guidance if guidance is None else guidance
    return guided_eps(self._labelled_eps(params), labels, self.null_like(labels), weight)

  # --- hooks --------------------------------------------------------------------------------------
  def init(self, rng, batch):
    z = jnp.zeros((1, *self.example_shape), jnp.float32)
    time = self.process.network_time(jnp.full((1,), self.process.t_max, jnp.float32))
    length = self.config.data.caption_length
    text = {
      "tokens": jnp.zeros((1, length, TEXT_WIDTH)), "mask": jnp.ones((1, length)),
      "pooled": jnp.zeros((1, TEXT_WIDTH)),
    }
    return self.network.init(rng, z, time, text)["params"], {}

  def loss(self, params, model_state, batch, rng):
    label_rng, dropout_rng, loss_rng = jax.random.split(rng, 3)
    network = self._network(
      params, self._train_labels(batch, label_rng), train=True, rng=dropout_rng
    )
    per_example = objectives.per_example_loss(
      self.denoiser, network, self.encode_images(batch["x"]), loss_rng, self.config.diffusion
    )
    return per_example.mean(), ({}, model_state)

  def eval_metrics(self, params, model_state, batch, rng):
    network = self._network(params, self.batch_text(batch))
    z = self.encode_images(batch["x"])
    return {
      "loss": objectives.per_example_loss(self.denoiser, network, z, rng, self.config.diffusion)
    }

  def _sample_labels(self, num: int):
    """The sample prompts' encodings, cycled to `num` rows."""
    rows = jnp.arange(num) % self.sample_text["pooled"].shape[0]
    return jax.tree.map(lambda v: v[rows], self.sample_text)

  def sample_labels(self, rng, num):
    if self.prompt_labels is None:
      return None
    return self.prompt_labels[jnp.arange(num) % self.prompt_labels.shape[0]]

  def _finish(self, z):
    return self.decode_latents(z)

  def generate(self, params, text: dict[str, jax.Array], rng: jax.Array, guidance: float) -> jax.Array:
    """Images [B, H, W, C] in data.value_range for the text rows ({tokens, mask, pooled}, [B]),
    with guidance weight `guidance` and the configured sampler."""
    eps = self.eps_fn(params, text, guidance)
    sharded_eps = lambda x, t: eps(self._shard(x), t)
    rows = text["pooled"].shape[0]
    return self._finish(self.sampler(sharded_eps, rng, (rows, *self.example_shape)))

  def image_grids(self, params, model_state, batch, rng):
    """samples: grid_size images, the sample prompts in turn (one prompt per column)."""
    return {"samples": self.sample(params, model_state, rng, self.config.sampling.grid_size)}

  def metric_conventions(self):
    diffusion, data = self.config.diffusion, self.config.data
    return {
      "loss": f"the training objective ({diffusion.objective} loss, {diffusion.reduce} over the "
      f"{'x'.join(map(str, self.example_shape))} latents z = {self.latent_scale:.4f} * the "
      f"autoencoder's posterior mean) given each image's caption ({data.captions}, held-out "
      f"templates and phrasings off the training split), averaged over examples; t and the noise "
      f"drawn with eval.seed; {data.name} {data.eval_split} split"
    }

  def parameter_groups(self, params):
    """The denoiser, and the frozen autoencoder (its shapes, when no run is bound)."""
    frozen = self.autoencoder_params
    if frozen is None:
      batch = {"x": jnp.zeros((1, *self.image_shape))}
      frozen = jax.eval_shape(lambda: self.autoencoder.init(jax.random.key(0), batch)[0])
    return {"denoiser": params, "autoencoder (frozen)": frozen}

