"""StyleGAN2 (Karras et al. 2020) on MNIST zero-padded to 32x32: a small network that trains on a
2-core CPU, with every part of the paper's recipe.

G: z (128) -> 2-layer mapping network (lr x 0.01) -> w (128) -> synthesis from a learned 4x4
constant through modulated/demodulated 3x3 convolutions with noise inputs at 4, 8, 16 and 32
(64, 64, 64, 32 channels: channel_base 1024, channel_max 64), skip toRGB outputs; 329,195
parameters (mapping 33,024).
D: residual blocks 32 -> 16 -> 8 -> 4, minibatch standard deviation (groups of 4), 3x3 conv,
dense, output; 288,929 parameters. Non-saturating logistic loss, lazy R1 (gamma 0.01 every 16
steps, CIFAR-10's gamma; 0.0002 R^2 / batch, the official "auto" heuristic, gives 0.0064), lazy path length
regularisation (weight 2 every 4 steps), style mixing 0.9, Adam 0.0025 (betas 0, 0.99, with the
lazy-regularisation correction), batch 32, G's EMA with a 10 kimg half-life ramped up over the
first images (ema_rampup 0.05), as the official "auto" config would give at this resolution and
batch. No augmentation: MNIST's 60k images are plenty (model.augment="ada" turns ADA on).

  python -m genjax.main --config=configs/stylegan2_mnist.py --workdir=/tmp/stylegan2_mnist
  python -m genjax.main --config=configs/stylegan2_mnist.py:tiny --workdir=/tmp/sg2_tiny  # ~1 min

The full run stops after 60 minutes of training (training.max_train_minutes; the same command
resumes), then evaluates MNIST FID, KID, IS and precision/recall of 10,000 EMA samples against the
60,000 training images (truncation psi 1, constant noise). Measured: see the README results table.
"""

from genjax.families import family_config


def get_config(arg: str = ""):
  config = family_config("stylegan2")
  config.data.name = "mnist"
  config.data.image_size = 32

  model = config.model
  model.latent_dim = 128
  model.w_dim = 128
  model.channel_base = 1024
  model.channel_max = 64
  model.mapping_layers = 2
  model.d_mapping_layers = 2
  model.mbstd_group_size = 4
  model.r1_gamma = 0.01
  model.ema_kimg = 10.0
  model.ema_rampup = 0.05

  training = config.training
  training.batch_size = 32
  training.num_train_steps = 100_000
  training.max_train_minutes = 60.0
  training.log_every = 100
  training.checkpoint_every = 1_000
  training.sample_every = 1_000
  training.max_d_loss = 100.0

  config.eval.num_examples = 10_000
  config.eval.sample_metrics = ("mnist_fid", "mnist_kid", "mnist_is", "mnist_prd")

  if arg == "tiny":
    model.latent_dim = 16
    model.w_dim = 16
    model.channel_base = 128
    model.channel_max = 16
    training.batch_size = 8
    training.num_train_steps = 32
    training.max_train_minutes = 0.0
    training.log_every = 16
    training.checkpoint_every = 16
    training.sample_every = 0
    config.eval.num_examples = 64
    config.eval.sample_metrics = ()
    config.sampling.grid_size = 16
    config.sampling.grid_columns = 4
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  return config
