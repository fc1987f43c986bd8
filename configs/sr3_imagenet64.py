"""SR3 super-resolution 16x16 -> 64x64 (4x) on ImageNet 64x64: 133.2M parameters (133,186,051),
ready for TPU/GPU.

genjax.families.sr3 (Saharia et al. 2021, "Image Super-Resolution via Iterative Refinement"):
the UNet sees the noisy 64x64 image and the 16x16 input (the 4x4 block mean of the image)
upsampled bicubically to 64x64, 6 channels, and predicts the noise, 3 channels.

What follows SR3 (arXiv:2104.07636, Sec. 4 and Appendix A): base width 128 with 3 residual blocks
per resolution and channel multipliers doubling from 1 (its 16->128 model: (1, 2, 4, 8, 8); its
64->256 model: (1, 2, 4, 4, 8, 8)); for a 64x64 output we take four levels, (1, 2, 4, 4) at 64, 32,
16 and 8 pixels, capped at 4 like its 64->256 model, with self-attention at 16x16; bicubic
upsampling of the input concatenated to x_t; the eps loss; batch 256, Adam 1e-4 with 10k linear
warmup steps, 1M steps. From the public reproduction
(Janspiry/Image-Super-Resolution-via-Iterative-Refinement, config/sr_sr3_16_128.json): the
training chain of 2000 steps with betas linear from 1e-6 to 1e-2, dropout 0.2. Ours: EMA 0.9999
and gradient clipping at 1 (DDPM's), random horizontal flips, and conditioning on the discrete
step instead of SR3's continuous noise level, so super-resolving uses DDIM with eta 1 (ancestral)
on 100 of the 2000 training steps rather than a re-tuned short schedule. Eval: the loss on 10k validation images. Not
trained on CPU; the tiny variant runs on synthetic 16x16x3 images (4x4 -> 16x16) to check the
pipeline.

Data: tfds `imagenet_resized/64x64` (train 1,281,167 / validation 50,000 images); tfds cannot
download it anonymously: put the Downsampled ImageNet 64x64 npz archives in data.manual_dir (or
$GENJAX_DATA_DIR) or prepare it into data.data_dir once.

  python -m genjax.main --config=configs/sr3_imagenet64.py --mode=summary   # ends with
  total_params=133186051
  python -m genjax.main --config=configs/sr3_imagenet64.py --workdir=gs://<bucket>/sr3_imagenet64
  python -m genjax.main --config=configs/sr3_imagenet64.py:tiny --workdir=/tmp/sr3_imagenet64_tiny
"""

from genjax.families import family_config


def get_config(arg: str = ""):
  config = family_config("sr3")
  data = config.data
  data.name = "imagenet_resized/64x64"
  data.train_split = "train"
  data.eval_split = "validation"
  data.in_memory = False  # 1.28M images: decoded on access
  data.value_range = (-1.0, 1.0)
  data.random_flip = True
  config.superres.scale = 4  # 16x16 -> 64x64
  config.superres.upsample = "bicubic"

  model = config.model
  model.channels = 128
  model.channel_mult = (1, 2, 4, 4)
  model.num_res_blocks = 3
  model.attention_resolutions = (16,)
  model.dropout = 0.2
  model.norm_groups = 32

  diffusion = config.diffusion
  diffusion.process = "ddpm"
  diffusion.num_timesteps = 2000
  diffusion.beta_schedule = "linear"
  diffusion.beta_start = 1e-6
  diffusion.beta_end = 1e-2
  diffusion.objective = "eps"

  config.optim.lr = 1e-4
  config.optim.warmup_steps = 10_000
  config.optim.grad_clip_norm = 1.0
  config.optim.ema_decay = 0.9999

  training = config.training
  training.batch_size = 256
  training.num_train_steps = 1_000_000
  training.log_every = 1000
  training.checkpoint_every = 10_000
  training.sample_every = 50_000

  sampling = config.sampling
  sampling.sampler = "ddim"
  sampling.eta = 1.0
  sampling.num_steps = 100

  config.eval.batch_size = 500
  config.eval.num_examples = 10_000
  config.eval.sample_metrics = ()  # an sr3 model has no unconditional samples

  if arg == "tiny":
    _tiny(config)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  return config


def _tiny(config):
  """Synthetic 16x16x3 images (4x4 inputs) and a small UNet: the pipeline in about a minute."""
  config.data.name = "synthetic_images"
  config.data.synthetic_shape = (16, 16, 3)
  config.data.num_examples = 512
  config.data.in_memory = True
  config.model.channels = 16
  config.model.channel_mult = (1, 2)
  config.model.num_res_blocks = 1
  config.model.attention_resolutions = (8,)
  config.model.norm_groups = 8
  config.optim.warmup_steps = 0
  config.training.batch_size = 16
  config.training.num_train_steps = 20
  config.training.log_every = 10
  config.training.checkpoint_every = 20
  config.training.sample_every = 0
  config.sampling.num_steps = 10
  config.sampling.grid_size = 16
  config.eval.batch_size = 32
  config.eval.num_examples = 32
