"""Equivalent PyTorch (CPU) implementations of genjax train steps, for scripts/benchmark.py --torch.

Each reference builds the same network as the genjax config, runs the same loss and optimizer on a
synthetic batch of the same shape, and returns a row with images_per_s and step_ms_median (eager
and, with torch.compile, compiled). PyTorch is not a genjax dependency: `pip install torch`.
"""

from __future__ import annotations

import statistics
import time


def _time_steps(step, repeats: int, warmup: int) -> list[float]:
  times = []
  for index in range(warmup + repeats):
    start = time.perf_counter()
    step()
    if index >= warmup:
      times.append(time.perf_counter() - start)
  return times


def vae_mnist(config, repeats: int, warmup: int) -> dict:
  """Burda et al.'s VAE: 784-200-200 tanh encoder to 50 Gaussian latents, mirrored Bernoulli decoder."""
  import torch
  from torch import nn

  torch.manual_seed(0)
  hidden, latent = list(config.model.hidden), config.model.latent_dim
  batch_size = config.training.batch_size

  def mlp(sizes):
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
      layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))

  encoder = mlp([784, *hidden, 2 * latent])
  decoder = mlp([latent, *hidden[::-1], 784])
  params = list(encoder.parameters()) + list(decoder.parameters())
  optimizer = torch.optim.Adam(params, lr=config.optim.lr, eps=config.optim.eps)
  x = (torch.rand(batch_size, 784) < 0.13).float()

  def loss_fn(x):
    mean, log_std = encoder(x).chunk(2, dim=1)
    z = mean + log_std.exp() * torch.randn_like(mean)
    recon = nn.functional.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(1)
    kl = (0.5 * (mean**2 + (2 * log_std).exp() - 1) - log_std).sum(1)
    return (recon + kl).mean()

  def run(loss):
    def step():
      optimizer.zero_grad(set_to_none=True)
      loss(x).backward()
      optimizer.step()
    return statistics.median(_time_steps(step, repeats, warmup))

  eager = run(loss_fn)
  row = {"step": "torch_train_step_eager", "images_per_s": batch_size / eager,
         "step_ms_median": 1e3 * eager, "batch": batch_size, "torch_version": torch.__version__,
         "torch_threads": torch.get_num_threads()}
  try:
    compiled = run(torch.compile(loss_fn))
    row.update(torch_compiled_images_per_s=batch_size / compiled, torch_compiled_ms=1e3 * compiled)
  except Exception as error:  # noqa: BLE001 - torch.compile needs a C++ toolchain; eager still counts
    row["torch_compile_error"] = f"{type(error).__name__}: {str(error)[:200]}"
  return row


REFERENCES = {"vae_mnist": vae_mnist}
