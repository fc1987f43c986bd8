"""PNG grids of images and density pictures of 2-D points (numpy + pillow only)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from etils import epath
from PIL import Image

from genjax.paths import as_path

if TYPE_CHECKING:
  import jax

ArrayT = TypeVar("ArrayT", "np.ndarray", "jax.Array")


def to_unit_range(x: ArrayT, value_range: tuple[float, float]) -> ArrayT:
  """Maps x (a numpy or jax array, any shape) from value_range = (low, high) linearly to [0, 1]:
  (x - low) / (high - low) in float32, the same kind of array. Values outside the range map outside
  [0, 1]: callers clip or check them."""
  low, high = (float(v) for v in value_range)
  if not high > low:
    raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}.")
  return (x.astype(np.float32) - low) / (high - low)


def make_grid(images: np.ndarray, columns: int, padding: int = 2) -> np.ndarray:
  """images [N, H, W, C] in [0, 1] -> one uint8 picture [rows*(H+p)+p, columns*(W+p)+p, C]."""
  count, height, width, channels = images.shape
  columns = max(1, min(columns, count))
  rows = -(-count // columns)
  grid = np.ones((rows * (height + padding) + padding, columns * (width + padding) + padding, channels))
  for index in range(count):
    top = padding + (index // columns) * (height + padding)
    left = padding + (index % columns) * (width + padding)
    grid[top : top + height, left : left + width] = images[index]
  return (grid * 255).round().astype(np.uint8)


def points_image(points: np.ndarray, extent: float = 3.0, size: int = 256) -> np.ndarray:
  """A [size, size, 1] uint8 density picture of 2-D points over [-extent, extent]^2 (dark = many)."""
  hist, _, _ = np.histogram2d(
    points[:, 1], points[:, 0], bins=size, range=[[-extent, extent], [-extent, extent]]
  )
  density = np.log1p(hist[::-1]) / max(np.log1p(hist).max(), 1e-9)
  return ((1.0 - density) * 255).astype(np.uint8)[..., None]


def render(samples: np.ndarray, value_range: tuple[float, float], columns: int) -> np.ndarray:
  """Images [N, H, W, C] -> a grid; points [N, 2] -> a density picture. Returns uint8 [H', W', C]."""
  if samples.ndim == 2:
    return points_image(samples)
  return make_grid(np.clip(to_unit_range(samples, value_range), 0.0, 1.0), columns)


def save_png(path: epath.PathLike, picture: np.ndarray) -> epath.Path:
  """Writes a uint8 [H, W, C] picture as PNG to a local or remote (gs://) path."""
  path = as_path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  encoded = io.BytesIO()
  Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(encoded, format="PNG")
  path.write_bytes(encoded.getvalue())
  return path
