"""DDPM's CIFAR-10 model (Ho et al. 2020): 35.7M parameters (35,746,307), ready for TPU/GPU.

UNet channels 128, channel_mult (1, 2, 2, 2), 2 residual blocks per level, attention at 16x16,
dropout 0.1, sinusoidal time embedding; 1000 linear-beta steps (1e-4 to 0.02), epsilon loss; batch
128, Adam 2e-4 with 5000 warmup steps, gradient clipping at 1, EMA 0.9999, random flips, 800k steps.
Samples: 1000-step ancestral sampling. Eval: the variational bound in bits/dim (the paper: <= 3.70
train / 3.75 test with L_simple; FID 3.17), and Inception FID and KID of 50k samples against the
statistics of all 50k training images (the paper's protocol, genjax/evaluation/paper_protocols.py). Not trained on CPU; the tiny variant runs on synthetic
32x32x3 images to check the pipeline.

  python -m genjax.main --config=configs/ddpm_cifar10.py --mode=summary   # ends with
  total_params=35746307
  python -m genjax.main --config=configs/ddpm_cifar10.py --workdir=gs://<bucket>/ddpm_cifar10
  python -m genjax.main --config=configs/ddpm_cifar10.py:tiny --workdir=/tmp/ddpm_cifar_tiny
"""

from genjax.evaluation.paper_protocols import use_paper_protocol
from genjax.families import family_config


def get_config(arg: str = ""):
  # The defaults are this model: DDPM's UNet, 1000 linear-beta steps, epsilon loss, ancestral
  # sampling and the full variational bound.
  config = family_config("diffusion")
  config.data.name = "cifar10"
  config.data.random_flip = True

  config.optim.lr = 2e-4
  config.optim.warmup_steps = 5000
  config.optim.grad_clip_norm = 1.0
  config.optim.ema_decay = 0.9999

  training = config.training
  training.batch_size = 128
  training.num_train_steps = 800_000
  training.log_every = 1000
  training.checkpoint_every = 10_000

  if arg == "tiny":
    _tiny(config)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  else:
    use_paper_protocol(config)  # Inception FID/KID: 50k samples vs train statistics
  return config


def _tiny(config):
  """Synthetic 32x32x3 images and a small UNet: checks the pipeline in about a minute on CPU."""
  config.data.name = "synthetic_images"
  config.data.num_examples = 512
  config.model.channels = 16
  config.model.channel_mult = (1, 2)
  config.model.num_res_blocks = 1
  config.model.norm_groups = 8
  config.optim.warmup_steps = 0
  config.training.batch_size = 16
  config.training.num_train_steps = 20
  config.training.log_every = 10
  config.training.checkpoint_every = 20
  config.sampling.num_steps = 10
  config.sampling.sampler = "ddim"
  config.sampling.grid_size = 16
  config.sampling.edit_num_steps = 10
  config.eval.batch_size = 32
  config.eval.num_examples = 32
  config.eval.vlb_timesteps = 4
