"""score_sde's NCSN++ (continuous VE SDE) on CIFAR-10 (Song et al. 2021b), for TPU/GPU.

UNet channels 128, channel_mult (1, 2, 2, 2), 4 residual blocks per level, BigGAN-style residual
resampling, skip rescaling, attention at 16x16, dropout 0.1, Gaussian Fourier embedding of log sigma
(scale 16); the network output is divided by sigma (epsilon parameterization). Differences from the
paper's NCSN++: average-pool / nearest resampling instead of FIR filters, and no progressive
input/output paths. VE SDE sigma 0.01 to 50, data in [0, 1], denoising score matching summed over
dimensions; batch 128, Adam 2e-4, 5000 warmup steps, clipping at 1, EMA 0.999, 1.3M steps. Samples:
PC, reverse-diffusion predictor + 1 Langevin step at snr 0.16, 1000 steps (paper FID 2.38).

  python -m genjax.main --config=configs/ncsnpp_ve_cifar10.py --mode=summary
  python -m genjax.main --config=configs/ncsnpp_ve_cifar10.py --workdir=gs://<bucket>/ncsnpp_ve
  python -m genjax.main --config=configs/ncsnpp_ve_cifar10.py:tiny --workdir=/tmp/ncsnpp_tiny
"""

from genjax.config import base_config
from genjax.diffusion.settings import add_diffusion_defaults, add_unet_defaults


def get_config(arg: str = ""):
  config = add_unet_defaults(add_diffusion_defaults(base_config()))
  config.data.name = "cifar10"
  config.data.value_range = (0.0, 1.0)
  config.data.random_flip = True

  model = config.model
  model.num_res_blocks = 4
  model.resblock = "biggan"
  model.skip_rescale = True
  model.embedding = "fourier"
  model.fourier_scale = 16.0

  diffusion = config.diffusion
  diffusion.process = "ve"
  diffusion.objective = "dsm"
  diffusion.reduce = "sum"
  diffusion.sigma_min = 0.01
  diffusion.sigma_max = 50.0
  diffusion.t_min = 1e-5

  config.optim.lr = 2e-4
  config.optim.warmup_steps = 5000
  config.optim.grad_clip_norm = 1.0
  config.optim.ema_decay = 0.999

  training = config.training
  training.batch_size = 128
  training.num_train_steps = 1_300_000
  training.log_every = 1000
  training.checkpoint_every = 10_000

  sampling = config.sampling
  sampling.sampler = "pc"
  sampling.predictor = "reverse_diffusion"
  sampling.corrector_steps = 1
  sampling.snr = 0.16
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
