"""The MNIST restoration benchmark's pieces: degradations, classical baselines, metrics, figure.

Convention everywhere: images are float [N, H, W, C] on [0, 1] (0 = black background of a digit),
masks are float [N, H, W, C] with 1 = known pixel, 0 = unknown.

Degradations (the benchmark protocol, all seeded and deterministic):
  gaussian_noise    clean + sigma * N(0, 1), NOT clipped (so the noise is exactly Gaussian, std sigma)
  centre_box_mask   a centred square of side round(fraction * H) unknown
  stroke_mask       a few random thick polylines unknown, 25-35% of the pixels
  downsample        block mean over factor x factor blocks (the models' super-resolution input)
`PROTOCOL` lists the benchmark's six degradations (`Degradation`).

Classical baselines (`BASELINES`, a Registry of `Baseline`): each maps the measurement to a
restored image [N, H, W, C] on [0, 1] (every output is clipped to [0, 1]). Denoisers with a free
parameter (Gaussian blur width, TV weight) are tuned by `tune_denoiser` on images disjoint from the
benchmark's (the benchmark uses MNIST training images; it restores test images).

Metrics: `psnr` and `ssim` per image on [0, 1] pixels; `mnist_fid` of a restored set against
reference feature moments (genjax's MNIST-classifier features, genjax.evaluation.extractors).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
import scipy.ndimage
import skimage.metrics
import skimage.restoration
import skimage.transform
from matplotlib.figure import Figure  # the object API: no pyplot state, no display backend

from genjax.evaluation.extractors import MnistExtractor, check_value_range
from genjax.evaluation.frechet import frechet_distance
from genjax.evaluation.statistics import moments_all_at_once
from genjax.registry import Registry

PSNR_CAP_DB = 100.0  # psnr of identical images (MSE floored at 1e-10)
TASKS = ("denoise", "inpaint", "superres")
PROTOCOL_SIZE = 28  # MNIST digits: the canvas every degradation and metric works on

# --------------------------------------------------------------------------------- degradations


def gaussian_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
  """clean [N, H, W, C] + sigma * z, z ~ N(0, 1) from np.random.default_rng(seed); float32, not
  clipped (values leave [0, 1]; the noise std is exactly sigma on [0, 1] pixels)."""
  noise = np.random.default_rng(seed).standard_normal(clean.shape)
  return (np.asarray(clean, np.float64) + sigma * noise).astype(np.float32)


def centre_box_mask(shape: Sequence[int], fraction: float = 0.5) -> np.ndarray:
  """Mask [N, H, W, C] (1 = known) whose centred square of side round(fraction * H) (and
  round(fraction * W)) is unknown; fraction 0.5 hides a quarter of the pixels."""
  n, height, width, channels = shape
  mask = np.ones((height, width), np.float32)
  box_h, box_w = round(fraction * height), round(fraction * width)
  top, left = (height - box_h) // 2, (width - box_w) // 2
  mask[top : top + box_h, left : left + box_w] = 0.0
  return np.broadcast_to(mask[None, :, :, None], (n, height, width, channels)).copy()


def _segment_distance(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
  """Distance of points [P, 2] to the segment start-end."""
  direction = end - start
  length2 = max(float(direction @ direction), 1e-12)
  t = np.clip((points - start) @ direction / length2, 0.0, 1.0)
  return np.linalg.norm(points - (start + t[:, None] * direction), axis=1)


def stroke_mask(
  shape: Sequence[int],
  seed: int,
  unknown_fraction: tuple[float, float] = (0.25, 0.35),
  width: tuple[float, float] = (2.0, 4.0),
  vertices: tuple[int, int] = (3, 5),
) -> np.ndarray:
  """Mask [N, H, W, C] (1 = known) of random brush strokes, seeded by np.random.default_rng(seed).

  Per image, strokes are added until at least unknown_fraction[0] of the pixels are unknown; a
  stroke that would take it above unknown_fraction[1] is drawn again. A stroke is a polyline of
  `vertices` (inclusive range) uniform random points in the image, of a uniform random width in
  `width` pixels: the pixels whose centre is within width / 2 of it are unknown."""
  n, height, width_px, channels = shape
  rng = np.random.default_rng(seed)
  rows, cols = np.mgrid[0:height, 0:width_px]
  centres = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float64)
  low, high = unknown_fraction
  masks = np.ones((n, height, width_px), np.float32)
  for index in range(n):
    unknown = np.zeros(height * width_px, bool)
    for _ in range(1000):
      if unknown.mean() >= low:
        break
      count = rng.integers(vertices[0], vertices[1] + 1)
      points = rng.uniform((0, 0), (height - 1, width_px - 1), size=(count, 2))
      radius = rng.uniform(*width) / 2.0
      stroke = np.zeros_like(unknown)
      for start, end in itertools.pairwise(points):
        stroke |= _segment_distance(centres, start, end) <= radius
      if (unknown | stroke).mean() <= high:
        unknown |= stroke
    else:
      raise RuntimeError(f"stroke_mask: no stroke fits the unknown fraction {unknown_fraction}.")
    masks[index] = np.where(unknown.reshape(height, width_px), 0.0, 1.0)
  return np.repeat(masks[..., None], channels, axis=-1)


def downsample(clean: np.ndarray, factor: int) -> np.ndarray:
  """Block mean: [N, H, W, C] -> [N, H / factor, W / factor, C] (H, W divisible by factor)."""
  n, height, width, channels = clean.shape
  if height % factor or width % factor:
    raise ValueError(f"downsample: {height}x{width} is not divisible by factor {factor}.")
  blocks = np.asarray(clean, np.float32).reshape(
    n, height // factor, factor, width // factor, factor, channels
  )
  return blocks.mean(axis=(2, 4))


@dataclasses.dataclass(frozen=True)
class Degradation:
  """One benchmark degradation. task: "denoise" (sigma), "inpaint" (mask: "box" or "strokes") or
  "superres" (scale)."""

  name: str
  task: str
  sigma: float = 0.0
  mask: str = ""
  scale: int = 1

  def apply(self, clean: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(measured, mask): noisy [N, H, W, C]; masked [N, H, W, C] (unknown pixels 0) with its mask;
    or low-res [N, H / scale, W / scale, C]. mask is None except for inpainting."""
    if self.task == "denoise":
      return gaussian_noise(clean, self.sigma, seed), None
    if self.task == "inpaint":
      mask = centre_box_mask(clean.shape) if self.mask == "box" else stroke_mask(clean.shape, seed)
      return (clean * mask).astype(np.float32), mask
    return downsample(clean, self.scale), None

  def arguments(self, mask: np.ndarray | None) -> dict:
    """The keyword arguments a baseline of this task takes besides the measurement."""
    return {"denoise": {"sigma": self.sigma}, "inpaint": {"mask": mask}}.get(
      self.task, {"scale": self.scale}
    )

  def describe(self) -> str:
    if self.task == "denoise":
      return f"Gaussian noise, std {self.sigma:g} on [0, 1] pixels, not clipped"
    if self.task == "inpaint":
      return (
        "centred 14x14 box unknown (25% of a 28x28 image)"
        if self.mask == "box"
        else "random brush strokes unknown (25-35% of the pixels; stroke_mask)"
      )
    return f"{self.scale}x block-mean downsampling"


PROTOCOL = (
  Degradation("denoise_sigma0.2", "denoise", sigma=0.2),
  Degradation("denoise_sigma0.5", "denoise", sigma=0.5),
  Degradation("inpaint_box", "inpaint", mask="box"),
  Degradation("inpaint_strokes", "inpaint", mask="strokes"),
  Degradation("superres_x2", "superres", scale=2),
  Degradation("superres_x4", "superres", scale=4),
)

# ------------------------------------------------------------------------------------ baselines


@dataclasses.dataclass(frozen=True)
class Baseline:
  """A classical restorer of one task. restore(measured, **task arguments, [parameter]) ->
  [N, H, W, C] on [0, 1]; task arguments: denoise (sigma, parameter), inpaint (mask), superres
  (scale). grid: candidate values of `parameter` for tune_denoiser; () when nothing is tuned."""

  task: str
  restore: Callable[..., np.ndarray]
  description: str
  grid: tuple[float, ...] = ()


BASELINES: Registry[Baseline] = Registry("restoration baseline")


def _per_image(function: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
  """function of each image [H, W, C] -> [H', W', C] (skimage drops a channel axis of size 1)."""
  outputs = [function(image) for image in np.asarray(images, np.float64)]
  return np.stack([out if out.ndim == images.ndim - 1 else out[..., None] for out in outputs])


def _finish(images: np.ndarray) -> np.ndarray:
  return np.clip(images, 0.0, 1.0).astype(np.float32)


def gaussian_denoise(noisy: np.ndarray, *, sigma: float, parameter: float) -> np.ndarray:
  """Gaussian blur of std `parameter` pixels over H, W (scipy.ndimage, reflect borders)."""
  del sigma
  blurred = scipy.ndimage.gaussian_filter(
    np.asarray(noisy, np.float64), sigma=(0, parameter, parameter, 0)
  )
  return _finish(blurred)


def median_denoise(
  noisy: np.ndarray, *, sigma: float, parameter: float | None = None
) -> np.ndarray:
  """3x3 median filter over H, W (scipy.ndimage, reflect borders)."""
  del sigma, parameter
  return _finish(scipy.ndimage.median_filter(np.asarray(noisy, np.float64), size=(1, 3, 3, 1)))


def nl_means_denoise(noisy: np.ndarray, *, sigma: float, parameter: float = 0.8) -> np.ndarray:
  """skimage non-local means with the known sigma and h = parameter * sigma (skimage advises 0.8
  for fast_mode on natural images; tuned here), 5x5 patches searched within 6 pixels."""
  return _finish(
    _per_image(
      lambda image: skimage.restoration.denoise_nl_means(
        image,
        h=parameter * sigma,
        sigma=sigma,
        patch_size=5,
        patch_distance=6,
        fast_mode=True,
        channel_axis=-1,
      ),
      noisy,
    )
  )


def tv_denoise(noisy: np.ndarray, *, sigma: float, parameter: float) -> np.ndarray:
  """Total-variation denoising (skimage's Chambolle), weight `parameter`."""
  del sigma
  return _finish(
    _per_image(
      lambda image: skimage.restoration.denoise_tv_chambolle(
        image, weight=parameter, channel_axis=-1
      ),
      noisy,
    )
  )


def mean_fill(measured: np.ndarray, *, mask: np.ndarray) -> np.ndarray:
  """Known pixels kept; unknown ones set to the mean of the image's known pixels (per channel)."""
  known = np.asarray(mask, np.float64)
  total = np.sum(measured * known, axis=(1, 2), keepdims=True)
  mean = total / np.maximum(np.sum(known, axis=(1, 2), keepdims=True), 1.0)
  return _finish(measured * known + mean * (1.0 - known))


def biharmonic_inpaint(measured: np.ndarray, *, mask: np.ndarray) -> np.ndarray:
  """skimage.restoration.inpaint_biharmonic of the unknown pixels (mask 0 in any channel)."""
  unknown = np.asarray(mask) < 0.5
  return _finish(
    np.stack(
      [
        skimage.restoration.inpaint_biharmonic(image, hole.any(-1), channel_axis=-1)
        for image, hole in zip(np.asarray(measured, np.float64), unknown, strict=True)
      ]
    )
  )


def bicubic_upsample(low: np.ndarray, *, scale: int) -> np.ndarray:
  """skimage.transform.resize, order 3, no anti-aliasing, edge borders; [N, h, w, C] ->
  [N, h * scale, w * scale, C]."""
  _, height, width, channels = low.shape
  shape = (height * scale, width * scale, channels)
  return _finish(
    _per_image(
      lambda image: skimage.transform.resize(
        image, shape, order=3, mode="edge", anti_aliasing=False
      ),
      low,
    )
  )


def nearest_upsample(low: np.ndarray, *, scale: int) -> np.ndarray:
  """Each low-res pixel repeated scale x scale times."""
  return _finish(np.repeat(np.repeat(low, scale, axis=1), scale, axis=2))


BASELINES.register("gaussian")(
  Baseline(
    "denoise", gaussian_denoise, "Gaussian blur, std tuned", (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
  )
)
BASELINES.register("median")(Baseline("denoise", median_denoise, "3x3 median filter"))
BASELINES.register("nl_means")(
  Baseline(
    "denoise",
    nl_means_denoise,
    "non-local means, 5x5 patches, distance 6, h / sigma tuned",
    (0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.2),
  )
)
BASELINES.register("tv")(
  Baseline(
    "denoise",
    tv_denoise,
    "total variation (Chambolle), weight tuned",
    (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8),
  )
)
BASELINES.register("mean_fill")(
  Baseline("inpaint", mean_fill, "unknown pixels = mean of the known ones")
)
BASELINES.register("biharmonic")(
  Baseline("inpaint", biharmonic_inpaint, "biharmonic inpainting (skimage)")
)
BASELINES.register("bicubic")(Baseline("superres", bicubic_upsample, "bicubic interpolation"))
BASELINES.register("nearest")(Baseline("superres", nearest_upsample, "nearest neighbour"))


def baselines_for(task: str) -> list[str]:
  """Names of the baselines of a task, in registry (sorted) order."""
  return [name for name in BASELINES.names() if BASELINES.get(name).task == task]


def tune_denoiser(name: str, tuning_clean: np.ndarray, sigma: float, seed: int) -> float | None:
  """The value in BASELINES[name].grid with the best mean PSNR on tuning_clean [M, H, W, C]
  (images NOT in the benchmark, e.g. MNIST training images) noised with gaussian_noise(tuning_clean,
  sigma, seed); None when the baseline has nothing to tune."""
  baseline = BASELINES.get(name)
  if not baseline.grid:
    return None
  noisy = gaussian_noise(tuning_clean, sigma, seed)
  scores = [
    float(np.mean(psnr(baseline.restore(noisy, sigma=sigma, parameter=value), tuning_clean)))
    for value in baseline.grid
  ]
  return baseline.grid[int(np.argmax(scores))]


# ---------------------------------------------------------------- a genjax restorer on the protocol


def canvas_padding(shape: tuple[int, ...], degradation: Degradation) -> int | None:
  """Zero-padding per side from the 28x28 protocol canvas to the model's [H, W, 1] (e.g. 2 for a
  32x32 model); None when the degradation cannot be expressed on that canvas (4x downsampling of a
  28x28 digit padded by 2: the blocks do not align)."""
  height, width, channels = shape
  pad = (height - PROTOCOL_SIZE) // 2
  if height != width or channels != 1 or pad < 0 or height != PROTOCOL_SIZE + 2 * pad:
    raise ValueError(f"The benchmark's canvas is 28x28x1 MNIST; the model's is {shape}.")
  if degradation.task == "superres" and pad % degradation.scale:
    return None
  return pad


def restore_in_batches(restorer, method, degradation, measured, mask, pad, key, batch_size):
  """Restores measured images (the 28x28 protocol's, [0, 1]) with restorer's `method`, in batches
  of batch_size (the last one padded, so every call has one shape; batch b with rng
  fold_in(key, b)). Returns (restored [N, 28, 28, 1] on [0, 1], timing dict)."""
  low, high = (float(v) for v in restorer.value_range)
  edge = pad // degradation.scale if degradation.task == "superres" else pad
  widths = ((0, 0), (edge, edge), (edge, edge), (0, 0))
  model_input = low + (high - low) * np.pad(measured, widths)  # padding: black, known
  model_mask = None if mask is None else np.pad(mask, widths, constant_values=1.0)
  options = {
    "denoise": {"noise_sigma": degradation.sigma},
    "inpaint": {},
    "superres": {"scale": degradation.scale},
  }[degradation.task]
  count = len(measured)
  size = min(batch_size, count)

  def call(index):
    rows = slice(index * size, (index + 1) * size)
    x, m = model_input[rows], None if model_mask is None else model_mask[rows]
    real = len(x)
    if real < size:
      x = np.concatenate([x, np.repeat(x[-1:], size - real, axis=0)])
      m = None if m is None else np.concatenate([m, np.repeat(m[-1:], size - real, axis=0)])
    start = time.perf_counter()
    out = restorer.restore(
      x.astype(np.float32),
      degradation.task,
      method,
      jax.random.fold_in(key, index),
      mask=m,
      num=1,
      **options,
    )
    out = np.asarray(out)  # waits for the computation
    seconds = time.perf_counter() - start
    out = (out[:real, 0] - low) / (high - low)
    out = out[:, pad : pad + PROTOCOL_SIZE, pad : pad + PROTOCOL_SIZE]
    return np.clip(out, 0.0, 1.0).astype(np.float32), seconds

  first, first_seconds = call(0)
  outputs, timed = [first], []
  for index in range(1, math.ceil(count / size)):
    out, seconds = call(index)
    outputs.append(out)
    timed.append(seconds)
  timing = {}
  if not timed:  # one batch only: run it again for a time without compilation
    again, seconds = call(0)
    timed.append(seconds)
    timing["repeat_identical"] = bool(np.array_equal(again, first))
  timing.update(
    seconds_per_image=sum(timed) / (len(timed) * size),
    first_call_seconds=first_seconds,
    compile_seconds_estimate=max(first_seconds - float(np.mean(timed)), 0.0),
    timed_calls=len(timed),
    batch_size=size,
  )
  return np.concatenate(outputs), timing


# -------------------------------------------------------------------------------------- metrics


def psnr(restored: np.ndarray, clean: np.ndarray) -> np.ndarray:
  """Per-image PSNR in dB on [0, 1] pixels, [N]: 10 log10(1 / MSE), MSE over H, W, C; identical
  images give PSNR_CAP_DB (MSE floored at 1e-10)."""
  restored, clean = np.asarray(restored, np.float64), np.asarray(clean, np.float64)
  if restored.shape != clean.shape:
    raise ValueError(f"psnr: shapes differ, {restored.shape} and {clean.shape}.")
  error = restored - clean
  mse = np.mean(error.reshape(error.shape[0], -1) ** 2, axis=1)
  return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))


def ssim(restored: np.ndarray, clean: np.ndarray) -> np.ndarray:
  """Per-image SSIM [N] (skimage.metrics.structural_similarity, data_range 1, Wang et al.'s
  settings: Gaussian window sigma 1.5 (11x11), population covariances), channels averaged."""
  return np.asarray(
    [
      skimage.metrics.structural_similarity(
        r,
        c,
        data_range=1.0,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
      )
      for r, c in zip(np.asarray(restored, np.float64), np.asarray(clean, np.float64), strict=True)
    ]
  )


_FEATURE_BATCH = 250


@functools.lru_cache(maxsize=1)
def _mnist_features_fn() -> tuple[MnistExtractor, Callable]:
  extractor = MnistExtractor.load()  # the committed weights, SHA-256 pinned
  return extractor, jax.jit(lambda variables, x: extractor.apply(variables, x, (0.0, 1.0))[0])


def mnist_feature_moments(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(mean [128], unbiased covariance [128, 128]) in float64 of the MNIST-classifier features
  (genjax.evaluation.extractors "mnist", committed weights) of images [N, 28, 28, 1] on [0, 1]
  (N >= 2); batches of 250, the last one padded, so one compilation serves every N."""
  images = np.asarray(images, np.float32)
  check_value_range(float(images.min()), float(images.max()), (0.0, 1.0), "restored images")
  extractor, features_of = _mnist_features_fn()
  features = []
  for start in range(0, len(images), _FEATURE_BATCH):
    batch = images[start : start + _FEATURE_BATCH]
    padded = np.concatenate([batch, np.repeat(batch[-1:], _FEATURE_BATCH - len(batch), axis=0)])
    features.append(np.asarray(features_of(extractor.variables, padded))[: len(batch)])
  return moments_all_at_once(np.concatenate(features))


def mnist_fid(images: np.ndarray, reference: tuple[np.ndarray, np.ndarray]) -> float:
  """MNIST FID of images [N, 28, 28, 1] on [0, 1] against reference = (mean [128], covariance
  [128, 128]), e.g. mnist_feature_moments of a clean set, or the cached statistics of a whole
  split (genjax.evaluation.reference.get_reference with the "mnist" extractor; the benchmark uses
  all 60,000 training images, the README's MNIST FID reference).

  FID is biased upwards at small N (the covariance of N feature vectors is noisy), so a few hundred
  restored images give numbers that compare methods with each other at the same N (and with the
  clean images' own FID at that N, the floor), never with FIDs of other N."""
  mean, covariance = mnist_feature_moments(images)
  return frechet_distance(mean, covariance, *reference)


# --------------------------------------------------------------------------------------- figure


def comparison_figure(
  rows: Sequence[Sequence[np.ndarray | None]],
  column_names: Sequence[str],
  path: str | Path,
  row_names: Sequence[str] | None = None,
) -> Path:
  """Writes a PNG grid: one row per example, one column per method (e.g. input, baselines, genjax
  methods, ground truth). rows[i][j]: an image [h, w, C] on [0, 1] of any size (drawn to the same
  cell size, nearest-neighbour, so a low-res input shows its pixels), or None for an empty cell.
  row_names label the rows (left). Returns the path."""
  if any(len(row) != len(column_names) for row in rows):
    raise ValueError(f"Every row needs {len(column_names)} cells, one per column name.")
  figure = Figure(figsize=(1.3 * len(column_names) + (1.6 if row_names else 0), 1.4 * len(rows)))
  axes = figure.subplots(len(rows), len(column_names), squeeze=False)
  for i, row in enumerate(rows):
    for j, image in enumerate(row):
      axis = axes[i, j]
      axis.set_xticks([])
      axis.set_yticks([])
      if image is None:
        axis.set_axis_off()
      else:
        image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
        grey = image.shape[-1] == 1
        axis.imshow(
          image[..., 0] if grey else image,
          cmap="gray" if grey else None,
          vmin=0,
          vmax=1,
          interpolation="nearest",
        )
      if i == 0:
        axis.set_title(column_names[j], fontsize=8)
    if row_names:
      axes[i, 0].set_ylabel(row_names[i], fontsize=7, rotation=0, ha="right", va="center")
  figure.tight_layout()
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, dpi=100)
  return path
