"""DeepDream on the MNIST classifier: gradient ascent on the input image of a layer's activation
or a class logit (Mordvintsev, Olah & Tyka 2015), the `deepdream` tool and `--mode=dream`.

Objectives (parse_objective) of genjax.evaluation.mnist_classifier.MnistCNN, read with flax's
capture_intermediates; a(x) is the layer's output after its ReLU (conv0..conv2, features) or the
raw logits (logits):

  "layer:<name>"            J(x) = mean over positions and channels of a(x)^2
  "layer:<name>:<channel>"  J(x) = mean over positions of a(x)[..., channel]^2
  "class:<k>"               J(x) = logit_k(x)

The ascent (dream) follows the classic algorithm: octaves o = octaves-1, ..., 0 work on the image
at side round(28 / octave_scale^o), smallest first; each octave starts from its downscaled copy of
the start image plus the detail the coarser octaves added (upsampled), and leaves
detail = image - base. The network always sees the octave's image resized to 28 x 28 (its dense
layers need that size), so coarse octaves shape coarse strokes. Each step

  s ~ U{-jitter..jitter}^2        random roll of the image (wraps around)
  g = roll(grad J(roll(x, s)), -s) then a Gaussian blur of g with sigma decaying linearly from
                                  `smoothing` to 0 over the whole dream (octave pixels)
  x <- clip(x + step_size * g / mean|g|, 0, 1)

and each octave's steps are one compiled lax.scan.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError

from genjax.datasets import read_mnist_idx, resolve_manual_dir
from genjax.evaluation.extractors import MnistExtractor, extractor_from_config
from genjax.evaluation.mnist_classifier import MnistCNN
from genjax.interpret import TOOLS, NotApplicable, Tool, ToolResult, save_figure
from genjax.paths import as_path

SIDE = 28  # the classifier's input is [B, 28, 28, 1]


def layer_sizes() -> dict[str, int]:
  """The named layers of MnistCNN and their channel counts, in network order."""
  model = MnistCNN()
  sizes = {f"conv{index}": width for index, width in enumerate(model.channels)}
  return {**sizes, "features": model.feature_dim, "logits": model.num_classes}


@dataclasses.dataclass(frozen=True)
class Objective:
  """J(x) of a parsed spec: `layer`'s activation reduced by `mode` ("mean_square" over all
  channels, "channel_square" of channel `index`, or "value": logit `index`)."""

  layer: str
  mode: str
  index: int = 0


def objective_choices() -> str:
  """The valid objective specs, with every layer's channel range (for error messages)."""
  sizes = layer_sizes()
  layers = ", ".join(f"{name} (channels 0..{size - 1})" for name, size in sizes.items())
  return (
    f'valid objectives are "layer:<name>" or "layer:<name>:<channel>" with a layer of {layers}, '
    f'and "class:<k>" with k in 0..{sizes["logits"] - 1}.'
  )


def parse_objective(spec: str) -> Objective:
  """Parses "layer:conv1", "layer:conv2:17" or "class:7"; ValueError listing the valid layers
  and ranges for anything else."""
  sizes = layer_sizes()
  kind, *rest = spec.split(":")

  def integer(text: str, what: str, size: int) -> int:
    if not text.isdigit() or int(text) >= size:
      raise ValueError(
        f"Objective {spec!r}: {what} {text!r} is not in 0..{size - 1}; " + objective_choices()
      )
    return int(text)

  if kind == "class" and len(rest) == 1:
    return Objective("logits", "value", integer(rest[0], "class", sizes["logits"]))
  if kind == "layer" and len(rest) in (1, 2):
    if rest[0] not in sizes:
      raise ValueError(f"Objective {spec!r}: unknown layer {rest[0]!r}; " + objective_choices())
    if len(rest) == 1:
      return Objective(rest[0], "mean_square")
    channel = integer(rest[1], f"layer {rest[0]!r} channel", sizes[rest[0]])
    return Objective(rest[0], "channel_square", channel)
  raise ValueError(f"Objective {spec!r} is not understood; " + objective_choices())


@functools.partial(jax.jit, static_argnames=("layer", "mode"))
def objective_values(
  variables: dict, images: jax.Array, layer: str, mode: str, index: jax.Array | int
) -> jax.Array:
  """images [B, 28, 28, 1] in [0, 1] -> J of each image [B] (see the module docstring)."""
  _, state = MnistCNN().apply(
    variables,
    images,
    capture_intermediates=lambda module, method: module.name == layer and method == "__call__",
    mutable=["intermediates"],
  )
  (activation,) = state["intermediates"][layer]["__call__"]
  if mode == "value":
    return activation[:, index]
  activation = activation if layer == "logits" else jax.nn.relu(activation)
  if mode == "channel_square":
    activation = activation[..., index]
  return jnp.mean(jnp.square(activation).reshape(activation.shape[0], -1), axis=1)


def _to_side(image: jax.Array) -> jax.Array:
  """An octave's image [s, s] -> the network's input [1, 28, 28, 1] (bilinear)."""
  return jax.image.resize(image, (SIDE, SIDE), "linear")[None, :, :, None]


def _gaussian_blur(image: jax.Array, sigma: jax.Array, radius: int) -> jax.Array:
  """image [s, s] convolved with a normalized Gaussian of std `sigma` (a traced scalar, > 0)
  truncated to [-radius, radius] pixels per axis; zero padding, same size."""
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  weights = jnp.exp(-0.5 * jnp.square(offsets / sigma))
  weights = weights / jnp.sum(weights)
  return jax.scipy.signal.convolve2d(image, jnp.outer(weights, weights), mode="same")


@functools.partial(jax.jit, static_argnames=("layer", "mode", "radius"))
def _octave(variables, image, keys, step_numbers, index, settings, *, layer, mode, radius):
  """One octave's ascent: image [s, s], keys [n] and step_numbers [n] (global step t, 0-based) ->
  (image [s, s], the image after each step at 28 x 28 [n, 28, 28]).

  settings = (step_size, jitter, smoothing, total_steps), traced scalars."""
  step_size, jitter, smoothing, total_steps = settings

  def value(x):
    return objective_values(variables, _to_side(x), layer, mode, index)[0]

  def step(x, inputs):
    key, t = inputs
    shift = jax.random.randint(key, (2,), -jitter, jitter + 1)
    grad = jax.grad(value)(jnp.roll(x, shift, axis=(0, 1)))
    grad = jnp.roll(grad, -shift, axis=(0, 1))
    sigma = jnp.maximum(smoothing * (1.0 - t / total_steps), 1e-3)
    grad = _gaussian_blur(grad, sigma, radius)
    x = jnp.clip(x + step_size * grad / (jnp.mean(jnp.abs(grad)) + 1e-12), 0.0, 1.0)
    return x, _to_side(x)[0, :, :, 0]

  return jax.lax.scan(step, image, (keys, step_numbers))


def octave_sides(octaves: int, octave_scale: float) -> list[int]:
  """Image sides of the octaves, smallest first, the last 28: round(28 / octave_scale^o)."""
  return [max(round(SIDE / octave_scale**o), 4) for o in reversed(range(octaves))]


def snapshot_steps(total_steps: int, count: int) -> list[int]:
  """`count` evenly spaced steps in 0..total_steps (0: the start image), both ends included."""
  return sorted({round(s) for s in np.linspace(0, total_steps, max(count, 2))})


def dream(
  variables: dict,
  image: jax.Array | np.ndarray,
  objective: str,
  *,
  steps: int = 40,
  step_size: float = 0.05,
  octaves: int = 3,
  octave_scale: float = 1.4,
  jitter: int = 2,
  smoothing: float = 1.0,
  num_snapshots: int = 8,
  rng: jax.Array,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
  """DeepDream of `objective` (a parse_objective spec) from image [28, 28] or [28, 28, 1] in
  [0, 1], `steps` ascent steps per octave (module docstring).

  Returns (final image [28, 28, 1], the progression: images [28, 28, 1] at
  snapshot_steps(octaves * steps, num_snapshots), objective values [octaves * steps + 1]: J of
  the start image, then J after each step at 28 x 28)."""
  parsed = parse_objective(objective)
  image = jnp.asarray(image, jnp.float32)
  if image.shape not in ((SIDE, SIDE), (SIDE, SIDE, 1)):
    raise ValueError(
      f"dream takes an MNIST-sized image [28, 28] or [28, 28, 1] in [0, 1], got "
      f"{tuple(image.shape)}; start_image() reads and resizes digits, noise and image files."
    )
  if steps < 1 or octaves < 1 or octave_scale <= 1.0 or jitter < 0 or smoothing < 0:
    raise ValueError(
      f"dream needs steps >= 1, octaves >= 1, octave_scale > 1, jitter >= 0 and smoothing >= 0; "
      f"got {steps}, {octaves}, {octave_scale}, {jitter}, {smoothing}."
    )
  image = image.reshape(SIDE, SIDE)
  total = octaves * steps
  settings = (jnp.float32(step_size), jnp.int32(jitter), jnp.float32(smoothing), jnp.float32(total))
  statics = {"layer": parsed.layer, "mode": parsed.mode, "radius": math.ceil(3 * smoothing)}
  keys = jax.random.split(rng, total)
  images, detail = [image[None]], None
  for number, side in enumerate(octave_sides(octaves, octave_scale)):
    base = jax.image.resize(image, (side, side), "linear", antialias=True)
    detail = (
      jnp.zeros_like(base) if detail is None else jax.image.resize(detail, base.shape, "linear")
    )
    window = slice(number * steps, (number + 1) * steps)
    dreamt, octave_images = _octave(
      variables,
      jnp.clip(base + detail, 0.0, 1.0),
      keys[window],
      jnp.arange(total)[window],
      parsed.index,
      settings,
      **statics,
    )
    detail = dreamt - base
    images.append(octave_images)

  images = jnp.concatenate(images)[..., None]  # [T + 1, 28, 28, 1]: the start, then each step
  values = objective_values(variables, images, parsed.layer, parsed.mode, parsed.index)
  progression = [np.asarray(images[t]) for t in snapshot_steps(total, num_snapshots)]
  return progression[-1], progression, np.asarray(values)


def mnist_test_digit(index: int, data_dir: str = "") -> tuple[np.ndarray, int]:
  """Test digit `index` of the official MNIST files in data_dir (default $GENJAX_DATA_DIR):
  (image [28, 28, 1] in [0, 1], its label)."""
  pixels, labels = read_mnist_idx(data_dir or os.environ.get("GENJAX_DATA_DIR", ""), "test")
  if not 0 <= index < len(pixels):
    raise ValueError(f"MNIST test digit {index} does not exist: choose 0..{len(pixels) - 1}.")
  return pixels[index, ..., None].astype(np.float32) / 255.0, int(labels[index])


def start_image(
  kind: str, rng: jax.Array | None = None, *, data_dir: str = "", index: int = 0
) -> np.ndarray:
  """The image a dream starts from, [28, 28, 1] in [0, 1]: kind "digit" (MNIST test digit
  `index`, see mnist_test_digit), "noise" (U[0, 1] pixels drawn with rng) or the path of an image
  file (read as grayscale, resized to 28 x 28; MNIST digits are light strokes on black)."""
  if kind == "digit":
    return mnist_test_digit(index, data_dir)[0]
  if kind == "noise":
    if rng is None:
      raise ValueError('start_image("noise") needs an rng key.')
    return np.asarray(jax.random.uniform(rng, (SIDE, SIDE, 1)), np.float32)
  path = as_path(kind)
  if not path.is_file():
    raise FileNotFoundError(
      f'Start image {kind!r} is neither "digit", "noise" nor an existing image file.'
    )
  try:
    with Image.open(io.BytesIO(path.read_bytes())) as picture:
      grey = picture.convert("L").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
    raise ValueError(
      f"Start image {kind!r} could not be read as an image ({error}); give a PNG, JPEG or other "
      "file that Pillow opens."
    ) from error
  return np.asarray(grey, np.float32)[..., None] / 255.0


@jax.jit
def _softmax(variables: dict, images: jax.Array) -> jax.Array:
  return jax.nn.softmax(MnistCNN().apply(variables, images)[1])


def probabilities(variables: dict, image: np.ndarray) -> np.ndarray:
  """The classifier's softmax p(y | image) [10] of one image [28, 28, 1] in [0, 1]."""
  return np.asarray(_softmax(variables, jnp.asarray(image, jnp.float32)[None])[0])


def progression_figure(rows: list[tuple[str, list[np.ndarray], list[int], np.ndarray]]) -> Figure:
  """One row per dream (objective spec, progression images [28, 28, 1], their steps, objective
  values [T + 1]): the snapshots titled with step and J, then J against the step."""
  columns = max(len(images) for _, images, _, _ in rows)
  figure = Figure(figsize=(1.15 * columns + 2.8, 1.5 * len(rows)), layout="constrained")
  grid = figure.add_gridspec(len(rows), columns + 1, width_ratios=[1] * columns + [2.4])
  for row, (spec, images, steps, values) in enumerate(rows):
    for column, (image, step) in enumerate(zip(images, steps)):
      axis = figure.add_subplot(grid[row, column])
      axis.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
      axis.set_title(f"step {step}\nJ={values[step]:.3g}", fontsize=7)
      axis.set_xticks([])
      axis.set_yticks([])
      if column == 0:
        axis.set_ylabel(spec, fontsize=8)
    curve = figure.add_subplot(grid[row, columns])
    curve.plot(np.arange(len(values)), values, color="tab:purple")
    curve.set_xlabel("step", fontsize=7)
    curve.set_ylabel("J", fontsize=7)
    curve.tick_params(labelsize=6)
  return figure


def _default_settings() -> dict[str, float | int]:
  """dream's keyword defaults (the settings a dream.json records), rng aside."""
  return {
    name: parameter.default
    for name, parameter in inspect.signature(dream).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "rng"
  }


def dream_to_dir(
  out_dir: epath.PathLike,
  objective: str,
  start: str | np.ndarray = "digit",
  *,
  seed: int = 0,
  data_dir: str = "",
  digit_index: int = 0,
  extractor: MnistExtractor | None = None,
  **settings,
) -> list[epath.Path]:
  """Dreams `objective` from `start` (a start_image kind or an image [28, 28(, 1)] in [0, 1])
  with the classifier of `extractor` (default: the committed weights) and dream's `settings`.

  Writes progression.{png,pdf} (snapshots with J, and the J curve), final.{png,pdf} (the image
  with the classifier's prediction) and dream.json (objective, start, seed, settings, weights
  SHA-256, J per step, snapshot steps, p(y | start) and p(y | final)); returns the paths."""
  extractor = extractor or MnistExtractor.load()
  start_key, dream_key = jax.random.split(jax.random.key(seed))
  if isinstance(start, str):
    image = start_image(start, start_key, data_dir=data_dir, index=digit_index)
  else:
    image = np.asarray(start, np.float32).reshape(SIDE, SIDE, 1)
  settings = {**_default_settings(), **settings}
  final, progression, values = dream(
    extractor.variables, image, objective, rng=dream_key, **settings
  )
  steps = snapshot_steps(len(values) - 1, settings["num_snapshots"])
  out_dir = as_path(out_dir)
  paths = save_figure(
    progression_figure([(objective, progression, steps, values)]), out_dir, "progression"
  )
  before, after = (
    probabilities(extractor.variables, image),
    probabilities(extractor.variables, final),
  )
  figure = Figure(figsize=(2.4, 2.6))
  axis = figure.add_subplot()
  axis.imshow(final[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
  axis.set_title(
    f"{objective}\nJ={values[-1]:.3g}, class {after.argmax()} (p={after.max():.2f})", fontsize=8
  )
  axis.set_axis_off()
  paths += save_figure(figure, out_dir, "final")
  record = {
    "objective": objective,
    "start": start if isinstance(start, str) else "array",
    "digit_index": digit_index if isinstance(start, str) and start == "digit" else None,
    "seed": seed,
    "settings": settings,
    "classifier_sha256": extractor.sha256,
    "values": [float(v) for v in values],
    "snapshot_steps": steps,
    "start_probabilities": [round(float(p), 6) for p in before],
    "final_probabilities": [round(float(p), 6) for p in after],
    "final_class": int(after.argmax()),
  }
  path = out_dir / "dream.json"
  path.write_text(json.dumps(record, indent=1))
  return [*paths, path]


def _run(experiment, state, rng: jax.Array) -> ToolResult:
  """Dreams, from one real test digit, its own class and the most probable other class (what
  would make this digit look like that one), 2 octaves of 15 steps each."""
  del state  # the classifier is fixed; it does not depend on the run's network
  config = experiment.config
  data_dir = resolve_manual_dir(config.data) if config.data.name == "mnist" else ""
  index_key, dream_key = jax.random.split(rng)
  index = int(jax.random.randint(index_key, (), 0, 10_000))
  try:
    digit, label = mnist_test_digit(index, data_dir)
  except FileNotFoundError as error:
    raise NotApplicable(f"DeepDream starts from a real MNIST digit: {error}") from error
  extractor = extractor_from_config("mnist", config.eval, (SIDE, SIDE, 1))
  ranked = np.argsort(probabilities(extractor.variables, digit))[::-1]
  other = int(next(c for c in ranked if c != label))
  rows, summary = [], {"digit_index": index, "digit_label": label}
  for target in (label, other):
    spec = f"class:{target}"
    final, progression, values = dream(
      extractor.variables, digit, spec, steps=15, octaves=2, num_snapshots=6, rng=dream_key
    )
    rows.append((spec, progression, snapshot_steps(len(values) - 1, 6), values))
    after = probabilities(extractor.variables, final)
    summary[spec] = {
      "logit_start": round(float(values[0]), 3),
      "logit_final": round(float(values[-1]), 3),
      "final_class": int(after.argmax()),
      "final_probability": round(float(after.max()), 3),
    }
  return ToolResult({"classes": progression_figure(rows)}, summary)


TOOLS.register("deepdream")(
  Tool(
    families=("vae", "gan", "stylegan2", "diffusion", "sr3"),
    description="DeepDream: gradient ascent on the MNIST classifier's class logits from a real "
    "test digit, toward its own class and the most probable other class",
    run=_run,
  )
)
