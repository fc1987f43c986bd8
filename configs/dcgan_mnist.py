"""DCGAN (Radford et al. 2016) on MNIST zero-padded to 32x32, pixels in [-1, 1].

G: z (100, N(0, I)) -> dense to 4x4x256 -> transposed 4x4 stride-2 convs 128, 64 with batch norm
and ReLU -> 32x32x1, tanh (1,066,881 parameters). D: 4x4 stride-2 convs 64-128-256 with leaky ReLU
(0.2) and batch norm after the second and third -> dense logit (661,313 parameters).
Non-saturating loss, Adam 2e-4 (b1 0.5, b2 0.999) for both networks, batch 64 (one D and one G
update per step), EMA 0.999 of G for samples and evaluation.

  python -m genjax.main --config=configs/dcgan_mnist.py --workdir=/tmp/dcgan_mnist
  python -m genjax.main --config=configs/dcgan_mnist.py:tiny --workdir=/tmp/dcgan_tiny  # ~1 min

Expected (measured, README results table): recognizable digits in samples/samples_0003000.png and
MNIST FID 55.8 (genjax MNIST-classifier features, 10k samples vs the 60k train images) after the
3,000-step run (about 3.2 epochs; 5.4 steps/s, 9 min on the quiet 2-core CPU); the tiny run only
shows blobs.
"""

from genjax.families import family_config


def get_config(arg: str = ""):
  # family_config("gan") holds these nets, the non-saturating loss and Adam 2e-4 (b1 0.5) for G and D.
  config = family_config("gan")
  config.data.name = "mnist"
  config.data.image_size = 32

  model = config.model
  config.optim.ema_decay = 0.999

  training = config.training
  training.batch_size = 64
  training.num_train_steps = 3_000
  training.log_every = 100
  training.checkpoint_every = 1_000
  training.sample_every = 500
  training.max_d_loss = 100.0

  config.eval.num_examples = 10_000
  # MNIST FID/KID/IS/PRD of 10,000 EMA-generator samples against the 60,000 training images.
  config.eval.sample_metrics = ("mnist_fid", "mnist_kid", "mnist_is", "mnist_prd")

  if arg == "tiny":
    model.g_features = (64, 32, 16)
    model.d_features = (16, 32, 64)
    training.num_train_steps = 300
    training.log_every = 50
    training.checkpoint_every = 150
    training.sample_every = 0
    config.optim.ema_decay = 0.99
    config.eval.num_examples = 1_000
    config.eval.sample_metrics = ()
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  return config
