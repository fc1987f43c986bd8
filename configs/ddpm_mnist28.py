"""A small DDPM on native 28x28 MNIST, pixels in [-1, 1]: the prior of the restoration benchmark.

The prior that `--mode=restore` (genjax.restore) uses to denoise, inpaint and super-resolve MNIST
digits. Unpadded, so 2x and 4x downsampling (14x14, 7x7) align with the digit (the 32x32
ddpm_mnist config pads by 2 pixels, half a pixel at 4x). UNet with channels 32/64/64 (channel_mult
1, 2, 2), 1 residual block per level, attention at 7x7, dropout 0.1 (1,112,801 parameters); 1000
linear-beta steps, epsilon loss; batch 32, Adam 5e-4 (warmup 200), EMA 0.999. Samples: DDIM with
eta 1 (ancestral) on 50 of the 1000 steps. A train step takes 1.1 s on the 2-core AMD CPU alone
(2.2 s at batch 64: `python scripts/benchmark.py --config=configs/ddpm_mnist28.py
--only=train_step`).

  # the benchmark's prior: 50 min on the 2-core CPU (1,200 steps beside other jobs)
  python -m genjax.main --config=configs/ddpm_mnist28.py --workdir=workdirs/ddpm_mnist28 \
      --config.training.max_train_minutes=50
  # ~1 min, the pipeline only:
  python -m genjax.main --config=configs/ddpm_mnist28.py:tiny --workdir=/tmp/ddpm_mnist28_tiny
  # restore a folder of noisy digits with it:
  python -m genjax.main --config=configs/ddpm_mnist28.py --workdir=workdirs/ddpm_mnist28 \
      --mode=restore --task=denoise --noise_sigma=0.2 --input=my_digits/

Measured (README, Results): eval/bpd_vlb 2.37 after 1,200 steps; the restoration benchmark.
"""

from genjax.families import family_config


def get_config(arg: str = ""):
  config = family_config("diffusion")
  config.data.name = "mnist"

  model = config.model
  model.channels = 32
  model.channel_mult = (1, 2, 2)
  model.num_res_blocks = 1
  model.attention_resolutions = (7,)
  model.norm_groups = 8

  config.optim.lr = 5e-4
  config.optim.warmup_steps = 200
  config.optim.grad_clip_norm = 1.0
  config.optim.ema_decay = 0.999

  training = config.training
  training.batch_size = 32
  training.num_train_steps = 100_000  # far more than fits: the CPU run ends on max_train_minutes
  training.log_every = 100
  training.checkpoint_every = 500

  sampling = config.sampling
  sampling.sampler = "ddim"
  sampling.eta = 1.0
  sampling.num_steps = 50
  sampling.edit_num_steps = 50

  config.eval.batch_size = 100
  config.eval.num_examples = 500
  config.eval.vlb_timesteps = 20

  if arg == "tiny":
    model.channels = 16
    model.channel_mult = (1, 2)
    model.num_res_blocks = 1
    model.attention_resolutions = (14,)
    training.batch_size = 16
    training.num_train_steps = 40
    training.log_every = 10
    training.checkpoint_every = 20
    config.optim.warmup_steps = 0
    sampling.num_steps = 10
    sampling.grid_size = 16
    sampling.edit_num_steps = 10
    config.eval.batch_size = 32
    config.eval.num_examples = 64
    config.eval.vlb_timesteps = 4
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  return config
