"""One convolution layer's kernels alone: XLA:CPU (genjax's flags) against PyTorch, in one run.

  python scripts/conv_kernels.py --reference_python=/tmp/torchenv/bin/python
  python scripts/conv_kernels.py --shapes=64x16x128x128 --repeats=30   # XLA only

For each shape BxHxCxF (a batch of B images H x H x C, a 3x3 stride-1 SAME convolution to F
channels, no bias, NHWC in JAX and NCHW in PyTorch, float32) it prints the median ms of the forward
pass and of the forward pass with both gradients (input and kernel, of sum(y^2) / 2), and each
framework's float32 matmul rate at 1024^2 in the same process. With --reference_python (an
environment with torch; none of genjax is imported there) the same script times PyTorch in a
subprocess with as many threads as this machine has cores, and each row adds torch_forward_ms,
torch_forward_and_gradients_ms and xla_vs_torch_<kind> = torch's time / XLA's (above 1: XLA
faster). The default shapes are ddpm_mnist's
UNet convolutions (channels 64/128/128 at 32, 16 and 8 pixels, batch 64).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time


def parse_args(argv=None) -> argparse.Namespace:
  """argparse, not absl: the torch environment needs nothing but torch."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shapes", default="64x32x64x64,64x16x128x128,64x8x128x128",
                      help="Comma-separated BxHxCxF: batch, height = width, in and out channels.")
  parser.add_argument("--repeats", type=int, default=20,
                      help="Timed calls per measurement (after one untimed).")
  parser.add_argument("--reference_python", default="",
                      help="Python of an environment with torch, to time PyTorch too.")
  parser.add_argument("--framework", choices=("xla", "torch"), default="xla",
                      help="Which one this process times.")
  return parser.parse_args(argv)


def median_ms(fn, repeats: int, *args) -> float:
  """The median ms of fn(*args) over `repeats` calls after one untimed call; fn must block until
  its result is computed."""
  fn(*args)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(*args)
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def time_xla(shapes, repeats: int) -> dict:
  import genjax  # noqa: F401, I001  (genjax's XLA:CPU flags, before JAX starts)
  import jax
  import jax.numpy as jnp
  import numpy as np

  rng = np.random.default_rng(0)
  square = jax.jit(lambda a: a @ a)
  a = jnp.asarray(rng.standard_normal((1024, 1024), np.float32))
  matmul_ms = median_ms(lambda a: square(a).block_until_ready(), repeats, a)
  matmul_gflops = 2 * 1024**3 / matmul_ms / 1e6

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  forward = jax.jit(conv)
  gradients = jax.jit(jax.grad(lambda x, w: 0.5 * jnp.sum(conv(x, w) ** 2), argnums=(0, 1)))
  forward_done = lambda x, w: forward(x, w).block_until_ready()
  gradients_done = lambda x, w: jax.block_until_ready(gradients(x, w))
  rows = {}
  for batch, size, channels, features in shapes:
    x = jnp.asarray(rng.standard_normal((batch, size, size, channels), np.float32))
    w = jnp.asarray(0.05 * rng.standard_normal((3, 3, channels, features), np.float32))
    rows[f"{batch}x{size}x{channels}x{features}"] = {
      "forward_ms": median_ms(forward_done, repeats, x, w),
      "forward_and_gradients_ms": median_ms(gradients_done, repeats, x, w),
    }
  return {"matmul_gflops": matmul_gflops, "shapes": rows}


def time_torch(shapes, repeats: int) -> dict:
  import torch

  torch.set_num_threads(os.cpu_count())
  generator = torch.Generator().manual_seed(0)
  a = torch.randn(1024, 1024, generator=generator)
  matmul_gflops = 2 * 1024**3 / median_ms(lambda a: a @ a, repeats, a) / 1e6
  rows = {}
  for batch, size, channels, features in shapes:
    x = torch.randn(batch, channels, size, size, generator=generator)
    w = 0.05 * torch.randn(features, channels, 3, 3, generator=generator)
    rows[f"{batch}x{size}x{channels}x{features}"] = {
      "forward_ms": median_ms(_torch_forward, repeats, x, w),
      "forward_and_gradients_ms": median_ms(_torch_forward_and_gradients, repeats, x, w),
    }
  return {"matmul_gflops": matmul_gflops, "shapes": rows, "torch": torch.__version__,
          "threads": torch.get_num_threads()}


def _torch_forward(x, w):
  import torch

  with torch.no_grad():
    torch.nn.functional.conv2d(x, w, padding=1)


def _torch_forward_and_gradients(x, w):
  import torch

  x, w = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
  (0.5 * torch.nn.functional.conv2d(x, w, padding=1).pow(2).sum()).backward()


def main(args: argparse.Namespace) -> None:
  shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.shapes.split(",")]
  if args.framework == "torch":
    print(json.dumps(time_torch(shapes, args.repeats)))
    return
  xla = time_xla(shapes, args.repeats)
  reference = None
  if args.reference_python:
    command = [args.reference_python, os.path.abspath(__file__), "--framework=torch",
               f"--shapes={args.shapes}", f"--repeats={args.repeats}"]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    reference = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps({"torch": reference["torch"], "torch_threads": reference["threads"],
                      "xla_matmul_gflops": xla["matmul_gflops"],
                      "torch_matmul_gflops": reference["matmul_gflops"]}))
  else:
    print(json.dumps({"xla_matmul_gflops": xla["matmul_gflops"]}))
  for shape, times in xla["shapes"].items():
    row = {"shape": shape, **{f"xla_{k}": v for k, v in times.items()}}
    if reference is not None:
      for kind, value in reference["shapes"][shape].items():
        row[f"torch_{kind}"] = value
        row[f"xla_vs_torch_{kind.removesuffix('_ms')}"] = value / times[kind]
    print(json.dumps(row))


if __name__ == "__main__":
  main(parse_args())
