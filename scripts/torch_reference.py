"""Equivalent PyTorch (CPU) implementations of genjax train steps, for scripts/benchmark.py --torch.

Each reference builds the same networks as the genjax config (scripts/torch_networks.py: same
layers and parameter counts), runs the same losses, optimizer and EMA updates on a synthetic batch
of the same shape and value range, and returns a row with images_per_s (real images a step
consumes, counted as benchmark.py counts the genjax step) and step_ms_median, eager and with
torch.compile of the loss functions, plus torch_params (total and per network). PyTorch is not a
genjax dependency: `pip install torch`. Torch runs with its default number of threads.

References, keyed by config file stem (REFERENCES):
  vae_mnist      Burda et al.'s MLP VAE, Adam.
  dcgan_mnist    model.n_critic D updates (one here), each on fresh real images and fresh latents
  wgan_gp_mnist  with G's output detached, then one G update on fresh latents; Adam for both;
                 EMA of G after the G update. Losses and the WGAN-GP gradient penalty as genjax.
  ddpm_mnist     epsilon loss at uniform random DDPM timesteps, Adam with linear warmup,
                 global-norm gradient clipping, EMA.
Sampling references (SAMPLING_REFERENCES, needs `pip install diffusers`):
  ddpm_mnist     DDIM with diffusers' DDIMScheduler (`ddim_sampling`), against genjax's
                 sample_ddim_nfe<N> row.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable

import numpy as np

StepFactory = Callable[[bool], Callable[[], None]]  # compiled? -> step


def _time_steps(step, repeats: int, warmup: int) -> list[float]:
  times = []
  for index in range(warmup + repeats):
    start = time.perf_counter()
    step()
    if index >= warmup:
      times.append(time.perf_counter() - start)
  return times


def _timed_row(make_step: StepFactory, images_per_step: int, repeats: int, warmup: int,
               use_compile: bool, extra: dict) -> dict:
  """Times make_step(False) (eager) and, with `use_compile`, make_step(True), whose loss functions
  are wrapped in torch.compile (a compile failure is recorded in the row, not raised)."""
  import torch

  eager = statistics.median(_time_steps(make_step(False), repeats, warmup))
  row = {"step": "torch_train_step_eager", "images_per_s": images_per_step / eager,
         "step_ms_median": 1e3 * eager, "batch": images_per_step,
         "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(), **extra}
  if not use_compile:
    row["torch_compile_skipped"] = True
    return row
  try:
    compiled = statistics.median(_time_steps(make_step(True), repeats, warmup))
    row.update(torch_compiled_images_per_s=images_per_step / compiled,
               torch_compiled_ms=1e3 * compiled)
  except Exception as error:  # noqa: BLE001 - compile may fail (e.g. no C++ toolchain)
    row["torch_compile_error"] = f"{type(error).__name__}: {str(error)[:200]}"
  return row


def _maybe_compile(fn: Callable, compiled: bool) -> Callable:
  import torch

  return torch.compile(fn) if compiled else fn


def _example_shape(config) -> tuple[int, ...]:
  """genjax's preprocessed example shape [H, W, C] of the config's data."""
  from genjax.datasets import dataset_info
  from genjax.input_pipeline import example_shape

  return tuple(example_shape(config.data, dataset_info(config.data)))


def _synthetic_images(config, shape: tuple[int, ...]):
  """Uniform pixels in data.value_range, [*shape] float32 (as benchmark.py's synthetic batch)."""
  import torch

  low, high = config.data.value_range
  return low + (high - low) * torch.rand(*shape)


def _adam(parameters, optim, lr: float):
  """torch Adam matching genjax.optim.make_optimizer for optim.name='adam' and a constant
  schedule with optional linear warmup: (optimizer, scheduler stepped once per update)."""
  import torch

  if optim.name != "adam" or optim.schedule != "constant" or optim.accumulate_steps > 1:
    raise ValueError(
      f"The PyTorch reference implements optim.name='adam' with schedule 'constant' and no "
      f"accumulation, got {optim.name!r}, {optim.schedule!r}, accumulate_steps="
      f"{optim.accumulate_steps}."
    )
  optimizer = torch.optim.Adam(parameters, lr=lr, betas=(optim.b1, optim.b2), eps=optim.eps)
  warmup = optim.warmup_steps
  scheduler = torch.optim.lr_scheduler.LambdaLR(
    optimizer, lambda update: min(update / warmup, 1.0) if warmup > 0 else 1.0)
  return optimizer, scheduler


def _param_counts(networks) -> dict:
  from torch_networks import parameter_count

  counts = {name: parameter_count(module) for name, module in networks.items()}
  return {"torch_params": sum(counts.values()), "torch_params_by_network": counts}


def vae_mnist(config, repeats: int, warmup: int, use_compile: bool = True) -> dict:
  """Burda et al.'s VAE: 784-200-200 tanh encoder to 50 Gaussian latents, mirrored Bernoulli
  decoder."""
  import torch
  from torch import nn

  torch.manual_seed(0)
  hidden, latent = list(config.model.hidden), config.model.latent_dim
  batch_size = config.training.batch_size

  def mlp(sizes):
    layers = []
    for a, b in itertools.pairwise(sizes[:-1]):
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

  def make_step(compiled):
    loss = _maybe_compile(loss_fn, compiled)

    def step():
      optimizer.zero_grad(set_to_none=True)
      loss(x).backward()
      optimizer.step()
    return step

  extra = {"torch_params": sum(p.numel() for p in params)}
  return _timed_row(make_step, batch_size, repeats, warmup, use_compile, extra)


def _adversarial_losses(name: str):
  """(L_D(d_real, d_fake), L_G(d_fake)) batch means, as genjax.gan.losses."""
  import torch.nn.functional as F

  if name == "non_saturating":
    return (lambda real, fake: (F.softplus(-real) + F.softplus(fake)).mean(),
            lambda fake: F.softplus(-fake).mean())
  if name == "wasserstein":
    return lambda real, fake: (fake - real).mean(), lambda fake: -fake.mean()
  raise ValueError(f"The PyTorch reference implements the non_saturating and wasserstein GAN "
                   f"losses, not model.loss={name!r}.")


def gan(config, repeats: int, warmup: int, use_compile: bool = True) -> dict:
  """genjax's GAN train step (genjax.families.gan) with DCGAN networks: model.n_critic critic
  updates, each on its own batch_size / n_critic real images and as many fresh latents (G's
  output detached; D sees real and fake in separate calls, so batch norm normalizes each on its
  own statistics), L_D = loss + gradient_penalty * mean_b (||grad D(x_hat_b)|| - 1)^2 at
  x_hat = eps real + (1 - eps) fake; then one G update on fresh latents through the updated D
  (D's weights get no gradients); then the EMA of G. images_per_s counts training.batch_size
  real images per step. The penalty's input gradient is torch.autograd.grad(create_graph=True)
  eagerly and torch.func.grad (same values) under torch.compile, whose AOTAutograd does not
  support double backward through autograd.grad."""
  import torch
  from torch_networks import build_networks

  model = config.model
  if model.r1_gamma > 0 or model.g_ortho_reg > 0 or model.augment != "none":
    raise ValueError("The PyTorch GAN reference implements neither r1_gamma, g_ortho_reg nor "
                     "diffaugment; set them to 0 / ''.")
  torch.manual_seed(0)
  shape = _example_shape(config)
  networks = build_networks(config, shape)
  generator, discriminator = networks["generator"], networks["discriminator"]
  n_critic, batch_size = model.n_critic, config.training.batch_size
  per_update = batch_size // n_critic
  optim = config.optim
  g_optimizer, g_scheduler = _adam(generator.parameters(), optim, optim.lr)
  d_optimizer, d_scheduler = _adam(discriminator.parameters(), optim, optim.d_lr)
  g_params = list(generator.parameters())
  ema = [parameter.detach().clone() for parameter in g_params]
  d_adversarial, g_adversarial = _adversarial_losses(model.loss)
  channels_first = (shape[-1], *shape[:-1])
  reals = _synthetic_images(config, (n_critic, per_update, *channels_first))

  def input_gradient_eager(x):
    x = x.requires_grad_(True)
    return torch.autograd.grad(discriminator(x).sum(), x, create_graph=True)[0]

  def input_gradient_functional(x):
    return torch.func.grad(lambda inputs: discriminator(inputs).sum())(x)

  def d_loss_fn(real, input_gradient):
    with torch.no_grad():
      fake = generator(torch.randn(per_update, model.latent_dim))
    loss = d_adversarial(discriminator(real), discriminator(fake))
    if model.gradient_penalty > 0:
      eps = torch.rand(per_update, 1, 1, 1)
      grads = input_gradient(eps * real + (1.0 - eps) * fake)
      norms = torch.sqrt(grads.flatten(1).square().sum(1) + 1e-12)
      loss = loss + model.gradient_penalty * (norms - 1.0).square().mean()
    return loss

  def g_loss_fn():
    return g_adversarial(discriminator(generator(torch.randn(per_update, model.latent_dim))))

  def make_step(compiled):
    d_loss, g_loss = _maybe_compile(d_loss_fn, compiled), _maybe_compile(g_loss_fn, compiled)
    input_gradient = input_gradient_functional if compiled else input_gradient_eager

    def step():
      for real in reals:
        d_optimizer.zero_grad(set_to_none=True)
        d_loss(real, input_gradient).backward()
        d_optimizer.step()
        d_scheduler.step()
      discriminator.requires_grad_(False)
      g_optimizer.zero_grad(set_to_none=True)
      g_loss().backward()
      g_optimizer.step()
      g_scheduler.step()
      discriminator.requires_grad_(True)
      if optim.ema_decay > 0:
        with torch.no_grad():
          torch._foreach_lerp_(ema, g_params, 1.0 - optim.ema_decay)
    return step

  extra = _param_counts(networks)
  if model.gradient_penalty > 0:
    extra["penalty_input_gradient"] = {"eager": "torch.autograd.grad(create_graph=True)",
                                       "compiled": "torch.func.grad"}
  return _timed_row(make_step, batch_size, repeats, warmup, use_compile, extra)


def ddpm(config, repeats: int, warmup: int, use_compile: bool = True) -> dict:
  """genjax's diffusion train step for diffusion.process='ddpm', objective 'eps': t uniform on
  {0..N-1}, x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, loss = mean |eps_hat(x_t, t)
  - eps|^2 (dropout on); Adam (warmup), clipping at optim.grad_clip_norm, EMA."""
  import torch
  import torch.nn.functional as F
  from torch_networks import build_networks

  diffusion = config.diffusion
  if (diffusion.process, diffusion.objective, diffusion.beta_schedule, diffusion.reduce) != (
      "ddpm", "eps", "linear", "mean") or diffusion.label_dropout > 0:
    raise ValueError("The PyTorch diffusion reference implements process 'ddpm' with objective "
                     "'eps', beta_schedule 'linear', reduce 'mean' and no label dropout.")
  torch.manual_seed(0)
  shape = _example_shape(config)
  networks = build_networks(config, shape)
  network = networks["model"]
  network.train()
  optim, batch_size = config.optim, config.training.batch_size
  params = list(network.parameters())
  optimizer, scheduler = _adam(params, optim, optim.lr)
  ema = [parameter.detach().clone() for parameter in params]
  betas = np.linspace(diffusion.beta_start, diffusion.beta_end, diffusion.num_timesteps)
  alpha_bars = torch.tensor(np.cumprod(1.0 - betas), dtype=torch.float32)
  x0 = _synthetic_images(config, (batch_size, shape[-1], *shape[:-1]))

  def loss_fn(x0):
    t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],))
    noise = torch.randn_like(x0)
    alpha_bar = alpha_bars[t].view(-1, 1, 1, 1)
    xt = alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * noise
    return F.mse_loss(network(xt, t.float()), noise)

  def make_step(compiled):
    loss = _maybe_compile(loss_fn, compiled)

    def step():
      optimizer.zero_grad(set_to_none=True)
      loss(x0).backward()
      if optim.grad_clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, optim.grad_clip_norm)
      optimizer.step()
      scheduler.step()
      if optim.ema_decay > 0:
        with torch.no_grad():
          torch._foreach_lerp_(ema, params, 1.0 - optim.ema_decay)
    return step

  return _timed_row(make_step, batch_size, repeats, warmup, use_compile, _param_counts(networks))


def ddim_sampling(config, repeats: int, warmup: int) -> dict:
  """DDIM sampling as diffusers does it: the config's UNet (eval mode, torch.inference_mode) and
  diffusers' DDIMScheduler (the config's linear betas, sampling.num_steps steps, x_0 clipped to
  [-1, 1], eta = sampling.eta) from Gaussian noise, training.batch_size images (the batch of
  benchmark.py's sampler rows); one timed call is the whole loop, and the row reports it per step
  (one UNet evaluation plus the update), as benchmark.py reports genjax's sample_ddim_nfe<N> row."""
  import diffusers
  import torch
  from torch_networks import build_networks

  diffusion, sampling = config.diffusion, config.sampling
  if (diffusion.process, diffusion.objective, diffusion.beta_schedule) != ("ddpm", "eps", "linear"):
    raise ValueError("The DDIM sampling reference implements process 'ddpm', objective 'eps' and "
                     "beta_schedule 'linear'.")
  torch.manual_seed(0)
  shape = _example_shape(config)
  network = build_networks(config, shape)["model"].eval()
  scheduler = diffusers.DDIMScheduler(
    num_train_timesteps=diffusion.num_timesteps, beta_start=diffusion.beta_start,
    beta_end=diffusion.beta_end, beta_schedule="linear", clip_sample=True)
  scheduler.set_timesteps(sampling.num_steps)
  batch = config.training.batch_size

  def sample():
    with torch.inference_mode():
      x = torch.randn(batch, shape[-1], *shape[:-1])
      for t in scheduler.timesteps:
        eps = network(x, t.float().expand(batch))
        x = scheduler.step(eps, t, x, eta=sampling.eta).prev_sample
    return x

  seconds = statistics.median(_time_steps(sample, repeats, warmup))
  return {"step": f"torch_diffusers_ddim_nfe{sampling.num_steps}", "batch": batch,
          "images_per_s": batch / seconds, "step_ms_median": 1e3 * seconds,
          "ms_per_step": 1e3 * seconds / sampling.num_steps, "torch_version": torch.__version__,
          "diffusers_version": diffusers.__version__, "torch_threads": torch.get_num_threads()}


REFERENCES = {"vae_mnist": vae_mnist, "dcgan_mnist": gan, "wgan_gp_mnist": gan,
              "ddpm_mnist": ddpm}
SAMPLING_REFERENCES = {"ddpm_mnist": ("ddim", ddim_sampling)}  # config stem: (sampler, reference)
