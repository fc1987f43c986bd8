"""StyleGAN2-ADA on CIFAR-10 (Karras et al. 2020, "Training Generative Adversarial Networks with
Limited Data"): the official "cifar" configuration of NVlabs/stylegan2-ada-pytorch train.py,
class-conditional as in the paper's CIFAR-10 results.

Architecture (train.py cfg_specs["cifar"]): 32x32 RGB, z = w = 512, channel_base 32768 and
channel_max 512 (512 channels at every resolution), a 2-layer mapping network (lr x 0.01), the
"orig" discriminator (no residual connections), minibatch std over groups of 32, conv_clamp 256,
and a label embedding in G's mapping with an 8-layer label mapping and projection in D.
Parameters, as the official code counts them (scripts/stylegan2_reference.py --mode=counts, which
builds training/networks.py Generator and Discriminator with train.py's kwargs, c_dim 10):
G 20,215,315 and D 23,089,664 (tests/test_stylegan2.py checks both).
Training: non-saturating loss, R1 gamma 0.01 every 16 steps, no path length regularisation and no
style mixing (train.py turns both off for cifar), Adam 0.0025 (betas 0, 0.99, lazy-corrected),
batch 64, G's EMA with a 500 kimg half-life ramped up over the first images (ramp 0.05), ADA (the
"bgc" pipeline, target r_t 0.6, p adjusted every 4 steps, 500 kimg to move p by 1); the paper
trains for 100,000 kimg (1.56M steps). The official num_fp16_res (float16 in the four highest
resolutions, outputs clamped) is not ported: the config runs in float32, and
--config.precision=bfloat16 computes every layer in bfloat16 instead (1.77x the float32 train step
on an H200; README, Speed).

  python -m genjax.main --config=configs/stylegan2_cifar10.py --workdir=gs://bucket/sg2_cifar10  # TPU/GPU
  python -m genjax.main --config=configs/stylegan2_cifar10.py --mode=summary
  python -m genjax.main --config=configs/stylegan2_cifar10.py:tiny --workdir=/tmp/sg2_cifar_tiny  # CPU

Needs CIFAR-10 from tfds (or its files in data.manual_dir). Paper result (its Table 2): FID 2.42,
conditional, 50k samples vs the training set; not reproduced here (no accelerator). Evaluation follows that
protocol (genjax/evaluation/paper_protocols.py): Inception FID and KID of 50k EMA samples against
all 50k training images. The tiny variant trains narrow nets on data.name="synthetic_images"
and only checks that everything runs.
"""

from genjax.evaluation.paper_protocols import use_paper_protocol
from genjax.families import family_config
from genjax.gan import settings


def get_config(arg: str = ""):
  config = family_config("stylegan2")
  config.data.name = "cifar10"

  model = config.model
  model.conditional = True
  model.latent_dim = 512
  model.w_dim = 512
  model.channel_base = 32768
  model.channel_max = 512
  model.mapping_layers = 2
  model.d_architecture = "orig"
  model.mbstd_group_size = 32
  model.conv_clamp = 256.0
  model.r1_gamma = 0.01
  model.pl_weight = 0.0
  model.style_mixing = 0.0
  model.ema_kimg = 500.0
  model.ema_rampup = 0.05
  model.augment = "ada"
  model.ada_pipeline = "bgc"
  model.ada_target = 0.6
  model.ada_interval = 4
  model.ada_kimg = 500.0

  training = config.training
  training.batch_size = 64
  training.num_train_steps = 100_000_000 // 64
  training.log_every = 1_000
  training.checkpoint_every = 10_000
  training.sample_every = 10_000
  training.eval_every = 100_000
  training.max_d_loss = 100.0
  use_paper_protocol(config)
  if arg == "tiny":
    settings.make_tiny(config)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  return config
