"""score_sde's DDPM++ (continuous VP SDE) on CIFAR-10 (Song et al. 2021b, Table 3), for TPU/GPU.

UNet channels 128, channel_mult (1, 2, 2, 2), 4 residual blocks per level, BigGAN-style residual
resampling, skip rescaling by 1/sqrt(2), attention at 16x16, dropout 0.1, positional embedding of
999 t (62,859,139 parameters here); VP SDE beta 0.1 to 20, denoising score matching reduced by mean;
batch 128, Adam 2e-4, 5000 warmup steps, clipping at 1, EMA 0.9999, 1.3M steps. Samples: PC with the
Euler-Maruyama predictor and no corrector, 1000 steps. Eval: probability-flow ODE bits/dim with
uniform dequantization (paper: 3.01 for the likelihood-weighted variant, FID 2.92 for this one).

  python -m genjax.main --config=configs/ddpmpp_vp_cifar10.py --mode=summary
  python -m genjax.main --config=configs/ddpmpp_vp_cifar10.py --workdir=gs://<bucket>/ddpmpp_vp
  python -m genjax.main --config=configs/ddpmpp_vp_cifar10.py:tiny --workdir=/tmp/ddpmpp_tiny
"""

from genjax.config import base_config
from genjax.diffusion.settings import add_diffusion_defaults, add_unet_defaults


def get_config(arg: str = ""):
  config = add_unet_defaults(add_diffusion_defaults(base_config()))
  config.data.name = "cifar10"
  config.data.value_range = (-1.0, 1.0)
  config.data.random_flip = True

  model = config.model
  model.num_res_blocks = 4
  model.resblock = "biggan"
  model.skip_rescale = True

  diffusion = config.diffusion
  diffusion.process = "vp"
  diffusion.objective = "dsm"
  diffusion.reduce = "mean"
  diffusion.t_min = 1e-5

  config.optim.lr = 2e-4
  config.optim.warmup_steps = 5000
  config.optim.grad_clip_norm = 1.0
  config.optim.ema_decay = 0.9999

  training = config.training
  training.batch_size = 128
  training.num_train_steps = 1_300_000
  training.log_every = 1000
  training.checkpoint_every = 10_000

  sampling = config.sampling
  sampling.sampler = "pc"
  sampling.predictor = "euler_maruyama"
  sampling.corrector_steps = 0
  sampling.num_steps = 1000
  config.eval.batch_size = 500
  config.eval.likelihood = "ode"

  if arg == "tiny":
    config.data.name = "synthetic_images"
    config.data.num_examples = 512
    model.channels = 16
    model.channel_mult = (1, 2)
    model.num_res_blocks = 1
    model.norm_groups = 8
    config.optim.warmup_steps = 0
    training.batch_size = 16
    training.num_train_steps = 20
    training.log_every = 10
    training.checkpoint_every = 20
    sampling.num_steps = 10
    sampling.num_samples = 16
    sampling.edit_num_steps = 10
    config.eval.batch_size = 8
    config.eval.num_examples = 8
    config.eval.rtol = config.eval.atol = 1e-3
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  return config
