"""StyleGAN2 on FFHQ at 256x256 (Karras et al. 2020): the official "paper256" configuration of
NVlabs/stylegan2-ada-pytorch train.py, the StyleGAN2-ADA paper's 256x256 FFHQ baseline.

Architecture (train.py cfg_specs["paper256"]): z = w = 512, channel_base 16384 and channel_max 512
(512 channels up to 32x32, then 256, 128, 64 at 64, 128, 256), an 8-layer mapping network
(lr x 0.01), the residual discriminator, minibatch std over groups of 8, conv_clamp 256.
Parameters, as the official code counts them (scripts/stylegan2_reference.py --mode=counts, which
builds training/networks.py Generator and Discriminator with train.py's kwargs): G 24,767,458 and
D 24,001,089 (tests/test_stylegan2.py checks both).
Training: non-saturating loss, R1 gamma 1 every 16 steps, path length regularisation (weight 2,
every 4 steps, on half the batch), style mixing 0.9, Adam 0.0025 (betas 0, 0.99, lazy-corrected),
batch 64, G's EMA with a 20 kimg half-life, horizontal flips (--mirror=1), no augmentation
(model.augment="ada" for limited data); the paper trains for 25,000 kimg (390k steps).
The official num_fp16_res (float16 in the four highest resolutions, outputs clamped) is not ported:
the config runs in float32, and --config.precision=bfloat16 computes every layer in bfloat16.

Data: a folder of images (data.name="image_folder"), e.g. the official FFHQ PNGs at 1024x1024 or
256x256; every image is centre-cropped and resized to 256x256 (box filter when downscaling by an
integer factor, as the official 256x256 dataset was made), or a tfds dataset by name.

  python -m genjax.main --config=configs/stylegan2_ffhq256.py --config.data.folder=/data/ffhq \
      --workdir=gs://bucket/sg2_ffhq256    # TPU/GPU
  python -m genjax.main --config=configs/stylegan2_ffhq256.py --mode=summary \
      --config.data.folder=<any folder of images>
  python -m genjax.main --config=configs/stylegan2_ffhq256.py:tiny --workdir=/tmp/sg2_ffhq_tiny  # CPU

The paper reports this setup's FFHQ 256x256 FIDs (50k samples vs the training images); none
is reproduced here (no accelerator). Evaluation: Inception FID and KID of 50k
EMA samples against the folder's images. The tiny variant trains narrow nets on
data.name="synthetic_images" and only checks that everything runs.
"""

from genjax.families import family_config
from genjax.gan import settings


def get_config(arg: str = ""):
  config = family_config("stylegan2")
  config.data.name = "image_folder"
  config.data.image_size = 256
  config.data.in_memory = False  # 70k images at 256x256x3 are 13.8 GB: decode on access
  config.data.random_flip = True
  config.data.num_threads = 16

  model = config.model
  model.latent_dim = 512
  model.w_dim = 512
  model.channel_base = 16384
  model.channel_max = 512
  model.mapping_layers = 8
  model.d_architecture = "resnet"
  model.mbstd_group_size = 8
  model.conv_clamp = 256.0
  model.r1_gamma = 1.0
  model.pl_weight = 2.0
  model.style_mixing = 0.9
  model.ema_kimg = 20.0
  model.ema_rampup = 0.0

  training = config.training
  training.batch_size = 64
  training.num_train_steps = 25_000_000 // 64
  training.log_every = 1_000
  training.checkpoint_every = 10_000
  training.sample_every = 10_000
  training.eval_every = 50_000
  training.max_d_loss = 100.0

  config.eval.sample_metrics = ("inception_fid", "inception_kid")
  config.eval.num_samples = 50_000
  config.eval.sample_batch_size = 100
  config.eval.reference_split = "train"
  config.eval.batch_size = 100
  if arg == "tiny":
    settings.make_tiny(config)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  return config
