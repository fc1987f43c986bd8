"""--mode=restore: denoise, inpaint or super-resolve the user's own images with a trained model.

  python -m genjax.main --config=C --workdir=W --mode=restore --task=denoise|inpaint|superres \
      --input=PATH_OR_FOLDER [--mask=PNG | --box=x0,y0,x1,y1] [--noise_sigma=S] [--scale=2|4] \
      [--num=4] [--method=...] [--output=DIR]

What restores what (entries of RESTORE_METHODS; `Restorer.methods` lists a model's, default first):
  diffusion prior  denoise: pigdm, sdedit   inpaint: ddnm, pigdm, repaint   superres: ddnm, pigdm
                   (genjax.diffusion.inverse and editing; settings in config.restore)
  sr3 model        superres: sr3 (the dedicated conditional model, at its own scale)
  vae              denoise: vae (the decoder's mean at the encoder's mean, or at posterior samples
                   when --num > 1)
Measurements: denoise takes y = x + noise_sigma n with noise_sigma on [0, 1] pixels; inpaint the
image and a mask (a PNG the input's size, white = the pixels to fill, or a box in the input's pixel
coordinates, x0, y0 inclusive, x1, y1 exclusive); superres the low-resolution image, taken to be
the mean of scale x scale blocks of the image wanted (genjax.diffusion.inverse.block_mean).

Files: every readable image of --input (a file, or the files directly in a folder) is converted to
the model's channels and fitted to its size (a smaller image is zero-padded around its centre, as
MNIST's 28 x 28 is padded to 32 x 32; any other is centre-cropped and resized), and the log says
which. For super-resolution the input is fitted to the model's size divided by the scale. Each
result goes next to its input (or into --output) as <name>.<task>.png (the input, then --num
restorations side by side) and <name>.<task>.npz (input, mask, samples [num, H, W, C] in the model's
value range, and how the input was fitted). A file that cannot be read, a mask of the wrong size or
a box outside the image is reported by name and skipped; the others are still restored, results
already written stay, and restore_report.json in the output folder lists both.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from PIL import Image

from genjax import images, trainer
from genjax.datasets import decode_image
from genjax.diffusion import editing, inverse
from genjax.registry import Registry

TASKS = ("denoise", "inpaint", "superres")
OUTPUT_MARK = tuple(f".{task}." for task in TASKS)  # outputs of earlier runs are not inputs


class RestoreError(ValueError):
  """A bad request or input; the message names the file and says how to fix it."""


@dataclasses.dataclass(frozen=True)
class Request:
  """What --mode=restore was asked to do (the command's flags)."""

  task: str
  input: str
  mask: str = ""
  box: str = ""
  noise_sigma: float = 0.0
  scale: int = 2
  num: int = 1
  method: str = ""
  output: str = ""


# A method: (restorer, task, noise sigma in the model's units, scale, several samples?) ->
# (params, measured [B, ...], mask [B, H, W, C], rng) -> restored [B, H, W, C].
MethodBuilder = Callable[["Restorer", str, float, int, bool], Callable]


@dataclasses.dataclass(frozen=True)
class RestoreMethod:
  """A registry entry: the model kind it needs (config.family), the tasks it does, its builder."""

  kind: str
  tasks: tuple[str, ...]
  build: MethodBuilder


RESTORE_METHODS: Registry[RestoreMethod] = Registry("restore method")
DEFAULT_METHODS = {"denoise": "pigdm", "inpaint": "ddnm", "superres": "ddnm"}  # diffusion priors


def _register(name: str, kind: str, tasks: tuple[str, ...]):
  def decorator(build: MethodBuilder) -> MethodBuilder:
    RESTORE_METHODS.register(name)(RestoreMethod(kind, tasks, build))
    return build

  return decorator


def _operator(task: str, mask: jax.Array, scale: int) -> inverse.Operator:
  return {"denoise": inverse.Identity, "inpaint": lambda: inverse.Mask(mask),
          "superres": lambda: inverse.Downsample(scale)}[task]()


def _prior(restorer: Restorer, run: Callable) -> Callable:
  """run(eps_fn, measured, mask, rng) as (params, measured, mask, rng) -> [B, H, W, C], with the
  unconditional eps of the prior and its output clipped like its samples."""
  family = restorer.family

  def method(params, y, mask, rng):
    eps = family.eps_fn(params, _null_labels(family, y.shape[0]))
    return family._finish(run(eps, y, mask, rng))

  return method


@_register("pigdm", "diffusion", TASKS)
def _pigdm(restorer, task, sigma, scale, several):
  settings, process = restorer.config.restore, restorer.family.sampling_process
  return _prior(restorer, lambda eps, y, mask, rng: inverse.pigdm(
    process, eps, rng, y, _operator(task, mask, scale), sigma, restorer.shape, settings.num_steps,
    settings.eta, settings.prior_variance, settings.guidance_scale))


@_register("ddnm", "diffusion", ("inpaint", "superres"))
def _ddnm(restorer, task, sigma, scale, several):
  settings, process = restorer.config.restore, restorer.family.sampling_process
  return _prior(restorer, lambda eps, y, mask, rng: inverse.ddnm(
    process, eps, rng, y, _operator(task, mask, scale), sigma, restorer.shape, settings.num_steps,
    settings.eta, restorer.value_range))


@_register("repaint", "diffusion", ("inpaint",))
def _repaint(restorer, task, sigma, scale, several):
  settings, process = restorer.config.restore, restorer.family.sampling_process
  return _prior(restorer, lambda eps, y, mask, rng: editing.inpaint(
    process, eps, rng, y, mask, settings.num_steps, settings.eta, settings.repaint_resample))


@_register("sdedit", "diffusion", ("denoise",))
def _sdedit(restorer, task, sigma, scale, several):
  settings, process = restorer.config.restore, restorer.family.sampling_process
  if settings.strength > 0:
    return _prior(restorer, lambda eps, y, mask, rng: editing.sdedit(
      process, eps, rng, y, settings.strength, settings.num_steps, settings.eta))
  return _prior(restorer, lambda eps, y, mask, rng: editing.denoise(
    process, eps, rng, y, sigma, settings.num_steps, settings.eta))


@_register("sr3", "sr3", ("superres",))
def _sr3(restorer, task, sigma, scale, several):
  return lambda params, y, mask, rng: restorer.family.super_resolve(params, y, rng)


@_register("vae", "vae", ("denoise",))
def _vae(restorer, task, sigma, scale, several):
  """The decoder's mean at the encoder's mean of the (clipped) noisy image, or with several
  samples at draws from the encoder's posterior."""
  family = restorer.family

  def method(params, y, mask, rng):
    mean, log_std = family._encode(params, jnp.clip(y, *restorer.value_range))
    if several:
      mean = mean + jnp.exp(log_std) * jax.random.normal(rng, mean.shape, mean.dtype)
    return family.likelihood.mean(family._decode(params, mean))

  return method


class Restorer:
  """A trained model (diffusion prior, sr3 or vae) as a restorer of measured images."""

  def __init__(self, config: ml_collections.ConfigDict, family, params, step: int):
    self.config, self.family, self.params, self.step = config, family, params, step
    self.shape = tuple(family.example_shape)
    self.value_range = tuple(config.data.value_range)
    self._compiled: dict[tuple, Callable] = {}

  @property
  def kind(self) -> str:
    return self.config.family

  def methods(self, task: str) -> tuple[str, ...]:
    """The registered methods this model offers for `task`, the default first."""
    if self.kind == "diffusion" and not self.family.info.is_image:
      return ()
    names = [name for name in RESTORE_METHODS.names()
             if RESTORE_METHODS.get(name).kind == self.kind and task in RESTORE_METHODS.get(name).tasks]
    return tuple(sorted(names, key=lambda name: name != DEFAULT_METHODS.get(task)))

  def check(self, task: str, method: str, noise_sigma: float, scale: int) -> str:
    """The method to use (default: the first); raises RestoreError for what this model can't do."""
    if task not in TASKS:
      raise RestoreError(f"Unknown --task={task!r}; use one of {', '.join(TASKS)}.")
    offered = self.methods(task)
    if not offered:
      raise RestoreError(
        f"This {self.kind} model cannot {task}: use a diffusion prior (denoise, inpaint, superres), an "
        "sr3 model (superres) or a vae (denoise)."
      )
    method = method or offered[0]
    if method not in offered:
      raise RestoreError(f"--method={method!r} does not {task} with a {self.kind} model; use one of {', '.join(offered)}.")
    if noise_sigma < 0:
      raise RestoreError(f"--noise_sigma must be >= 0, got {noise_sigma}.")
    if task == "denoise" and noise_sigma == 0 and method != "vae":
      raise RestoreError("--task=denoise needs the noise level: --noise_sigma=S, the noise's standard "
                         "deviation on [0, 1] pixels (e.g. 0.1).")
    if task == "superres":
      height, width, _ = self.shape
      if self.kind == "sr3" and scale != self.family.scale:
        raise RestoreError(f"This sr3 model super-resolves by {self.family.scale}x, not --scale={scale}; "
                           f"use --scale={self.family.scale} or a diffusion prior.")
      if scale < 2 or height % scale or width % scale:
        raise RestoreError(f"--scale={scale} does not divide the model's {height}x{width} images; use "
                           f"a factor of both, >= 2 (e.g. 2 or 4).")
    return method

  def restore(self, measured, task: str, method: str, rng: jax.Array, *, noise_sigma: float = 0.0,
              scale: int = 2, mask=None, num: int = 1) -> np.ndarray:
    """Restorations [N, num, H, W, C] (the model's value range) of `measured` [N, ...]:
    denoise [N, H, W, C] with noise of std noise_sigma on [0, 1] pixels; inpaint [N, H, W, C] with
    mask [N, H, W, C] (1 = known); superres [N, H/scale, W/scale, C]."""
    method = self.check(task, method, noise_sigma, scale)
    measured = jnp.asarray(measured, jnp.float32)
    if mask is None:
      mask = jnp.ones((measured.shape[0], *self.shape), jnp.float32)
    repeat = lambda x: jnp.repeat(jnp.asarray(x, jnp.float32), num, axis=0)
    low, high = self.value_range
    settings = (method, task, noise_sigma * (high - low), scale, num > 1)  # the noise in model units
    if settings not in self._compiled:
      self._compiled[settings] = jax.jit(RESTORE_METHODS.get(method).build(self, *settings[1:]))
    rng = jax.random.key(0) if rng is None else rng
    out = self._compiled[settings](self.params, repeat(measured), repeat(mask), rng)
    return np.asarray(out).reshape(measured.shape[0], num, *self.shape)


def _null_labels(family, num: int):
  """Unconditional sampling: no labels, or the "no label" class of a guidance-trained model."""
  if not getattr(family, "num_classes", 0):
    return None
  if family.config.diffusion.label_dropout <= 0:
    raise RestoreError("Restoring needs an unconditional prior; this model is class-conditional "
                       "without dropped labels (diffusion.label_dropout = 0).")
  return jnp.full((num,), family.num_classes, jnp.int32)


def load_restorer(config: ml_collections.ConfigDict, workdir: epath.PathLike, step: int | None = None) -> Restorer:
  """The Restorer of a trained workdir's checkpoint `step` (default: the latest), EMA weights when
  the config samples with them."""
  experiment, state, step = trainer.restore_for_inference(config, workdir, step)
  try:  # the parameters first: with sampling.autoguidance they include the guide step's
    params = experiment.sample_params(state)
  finally:
    experiment.checkpointer.close()
  return Restorer(config, experiment.family, params, step)


# --- files ----------------------------------------------------------------------------------------


def _input_files(source: str) -> list[epath.Path]:
  path = epath.Path(os.path.expanduser(source))
  if path.is_file():
    return [path]
  if not path.is_dir():
    raise RestoreError(f"--input={source!r} is neither a file nor a folder.")
  files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                 and not any(mark in p.name for mark in OUTPUT_MARK) and p.name != "restore_report.json")
  if not files:
    raise RestoreError(f"The folder {str(path)!r} holds no files to restore.")
  return files


def fit(pixels: np.ndarray, size: tuple[int, int], resample=Image.Resampling.LANCZOS) -> tuple[np.ndarray, str]:
  """pixels [h, w, C] uint8 fitted to size (H, W), and a note saying how ("" when unchanged): a
  smaller image is zero-padded around its centre, any other centre-cropped to a square and
  resized."""
  height, width = size
  h, w = pixels.shape[:2]
  if (h, w) == (height, width):
    return pixels, ""
  if h <= height and w <= width:
    top, left = (height - h) // 2, (width - w) // 2
    padded = np.pad(pixels, ((top, height - h - top), (left, width - w - left), (0, 0)))
    return padded, f"zero-padded from {w}x{h} to {width}x{height} pixels"
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  square = pixels[top:top + side, left:left + side]
  image = Image.fromarray(square[..., 0] if square.shape[-1] == 1 else square)
  resized = np.asarray(image.resize((width, height), resample)).reshape(height, width, -1)
  return resized, f"centre-cropped from {w}x{h} to {side}x{side} and resized to {width}x{height} pixels"


def _read_image(path: epath.Path, channels: int) -> tuple[np.ndarray, str]:
  try:
    with path.open("rb") as file, Image.open(file) as image:
      mode = image.mode
    pixels = decode_image(path, channels, 0)
  except Exception as error:  # noqa: BLE001 - PIL raises many types for broken files
    raise RestoreError(f"{str(path)!r} is not a readable image ({type(error).__name__}: {error}).") from None
  wanted = "L" if channels == 1 else "RGB"
  note = "" if mode in (wanted, "1", "P" if channels == 3 else "L") else f"converted from {mode} to {wanted}"
  return pixels, note


def _unknown_pixels(path: epath.Path, request: Request, size: tuple[int, int]) -> np.ndarray:
  """[h, w, 1] uint8, 1 where the input image (of `size` (h, w)) is to be filled."""
  h, w = size
  if request.mask:
    mask_path = epath.Path(os.path.expanduser(request.mask))
    mask, _ = _read_image(mask_path, 1)
    if mask.shape[:2] != (h, w):
      raise RestoreError(f"The mask {str(mask_path)!r} is {mask.shape[1]}x{mask.shape[0]} pixels but "
                         f"{str(path)!r} is {w}x{h}; give a mask of the image's size (white = fill).")
    return (mask > 127).astype(np.uint8)
  try:
    x0, y0, x1, y1 = (int(v) for v in request.box.split(","))
  except ValueError:
    raise RestoreError(f"--box={request.box!r} must be four integers x0,y0,x1,y1.") from None
  if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
    raise RestoreError(f"--box={request.box} does not lie inside {str(path)!r} ({w}x{h} pixels): need "
                       f"0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}.")
  unknown = np.zeros((h, w, 1), np.uint8)
  unknown[y0:y1, x0:x1] = 1
  return unknown


@dataclasses.dataclass
class Prepared:
  """One input file, fitted: measured [.., C] and mask [H, W, C] in the model's value range."""

  path: epath.Path
  measured: np.ndarray
  mask: np.ndarray | None
  notes: list[str]


def _prepare(path: epath.Path, request: Request, restorer: Restorer) -> Prepared:
  height, width, channels = restorer.shape
  low, high = restorer.value_range
  pixels, note = _read_image(path, channels)
  notes = [note] if note else []
  size = (height // request.scale, width // request.scale) if request.task == "superres" else (height, width)
  fitted, how = fit(pixels, size)
  notes += [how] if how else []
  mask = None
  if request.task == "inpaint":
    unknown, _ = fit(_unknown_pixels(path, request, pixels.shape[:2]), size, Image.Resampling.NEAREST)
    mask = np.broadcast_to(1.0 - unknown.astype(np.float32), (height, width, channels))
  measured = low + (high - low) * fitted.astype(np.float32) / 255.0
  return Prepared(path, measured, mask, notes)


def _write(prepared: Prepared, samples: np.ndarray, request: Request, method: str, restorer: Restorer,
           folder: epath.Path) -> list[str]:
  """<name>.<task>.png (input, then the samples) and <name>.<task>.npz; returns their paths."""
  low, high = restorer.value_range
  shown = prepared.measured
  if request.task == "superres":
    shown = np.repeat(np.repeat(shown, request.scale, axis=0), request.scale, axis=1)
  if prepared.mask is not None:
    shown = np.where(prepared.mask > 0, shown, (low + high) / 2)  # the holes in mid-grey
  row = np.concatenate([shown[None], samples])
  stem = folder / f"{prepared.path.stem}.{request.task}"
  png = images.save_png(f"{stem}.png", images.render(row, (low, high), len(row)))
  arrays = {"input": prepared.measured, "samples": samples, "value_range": np.asarray([low, high]),
            "task": request.task, "method": method, "noise_sigma": request.noise_sigma,
            "scale": request.scale, "notes": np.asarray(prepared.notes, dtype=str),
            "source": str(prepared.path), "step": restorer.step}
  if prepared.mask is not None:
    arrays["mask"] = prepared.mask
  with epath.Path(f"{stem}.npz").open("wb") as file:
    np.savez(file, **arrays)
  return [str(png), f"{stem}.npz"]


def restore_files(config: ml_collections.ConfigDict, workdir: epath.PathLike, request: Request,
                  step: int | None = None, restorer: Restorer | None = None) -> dict:
  """Restores every image of request.input (module docstring); returns the report it also writes
  to <output>/restore_report.json: {"restored": {input: {"outputs", "notes"}}, "errors": {input:
  message}, and the settings}."""
  if request.task not in TASKS:
    raise RestoreError(f"Unknown --task={request.task!r}; use one of {', '.join(TASKS)}.")
  if request.num < 1:
    raise RestoreError(f"--num must be >= 1, got {request.num}.")
  if request.task == "inpaint" and bool(request.mask) == bool(request.box):
    raise RestoreError("--task=inpaint needs exactly one of --mask=<PNG the input's size, white = "
                       "fill> or --box=x0,y0,x1,y1.")
  files = _input_files(request.input)
  restorer = restorer or load_restorer(config, workdir, step)
  method = restorer.check(request.task, request.method, request.noise_sigma, request.scale)
  source = epath.Path(os.path.expanduser(request.input))
  folder = epath.Path(os.path.expanduser(request.output)) if request.output else (
    source if source.is_dir() else source.parent)
  folder.mkdir(parents=True, exist_ok=True)
  report = {"task": request.task, "method": method, "noise_sigma": request.noise_sigma,
            "scale": request.scale, "num": request.num, "step": restorer.step, "restored": {}, "errors": {}}
  prepared = []
  for path in files:
    try:
      prepared.append(_prepare(path, request, restorer))
    except RestoreError as error:
      logging.error("Skipped: %s", error)
      report["errors"][str(path)] = str(error)
  batch_size = max(1, min(config.restore.batch_size, len(prepared) or 1))
  key = jax.random.key(config.restore.seed)
  for start in range(0, len(prepared), batch_size):
    chunk = prepared[start:start + batch_size]
    padded = chunk + [chunk[-1]] * (batch_size - len(chunk))  # one shape, one compilation
    masks = None if request.task != "inpaint" else np.stack([p.mask for p in padded])
    samples = restorer.restore(np.stack([p.measured for p in padded]), request.task, method,
                               jax.random.fold_in(key, start), noise_sigma=request.noise_sigma,
                               scale=request.scale, mask=masks, num=request.num)
    for item, restored in zip(chunk, samples, strict=False):
      for note in item.notes:
        logging.info("%s: %s.", item.path, note)
      outputs = _write(item, restored, request, method, restorer, folder)
      report["restored"][str(item.path)] = {"outputs": outputs, "notes": item.notes}
      logging.info("Restored %s -> %s", item.path, outputs[0])
    (folder / "restore_report.json").write_text(json.dumps(report, indent=2))
  (folder / "restore_report.json").write_text(json.dumps(report, indent=2))
  return report
