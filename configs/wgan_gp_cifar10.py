"""WGAN-GP (Gulrajani et al. 2017) on CIFAR-10 with the paper's ResNet (gan_cifar_resnet.py).

G: z (128) -> dense 4x4x128 -> 3 up-sampling residual blocks (128 channels, batch norm) -> BN,
ReLU, 3x3 conv, tanh: 1,204,483 parameters. Critic without normalization: an optimized down block
128, a down block 128, two blocks 128, ReLU, global mean pooling, dense: 1,053,825 parameters.
Wasserstein loss with gradient penalty 10, 5 critic updates per G update, 64 images per update
(training.batch_size = 5 x 64 = 320 real images per step), Adam 2e-4 (b1 0, b2 0.9) for both,
linearly decayed to 0 over 100,000 generator updates, EMA 0.9999 of G for evaluation.

  python -m genjax.main --config=configs/wgan_gp_cifar10.py --workdir=/tmp/wgan_gp_c10  # GPU
  python -m genjax.main --config=configs/wgan_gp_cifar10.py --mode=summary  # total_params=2258308
  python -m genjax.main --config=configs/wgan_gp_cifar10.py:tiny --workdir=/tmp/wgan_gp_tiny  # CPU

The full run needs CIFAR-10 prepared by tfds (or its files in data.manual_dir). Paper result:
unconditional Inception score 7.86; not yet reproduced here. The tiny variant trains narrow nets on
data.name="synthetic_images" and only checks that everything runs.
"""

from genjax.families.gan import gan_base_config


def get_config(arg: str = ""):
  config = gan_base_config()
  config.data.name = "cifar10"
  config.data.value_range = (-1.0, 1.0)

  model = config.model
  model.name = "wgan_gp_resnet_cifar10"
  model.network = "resnet"
  model.latent_dim = 128
  model.g_features = (128, 128, 128)
  model.d_features = (128, 128, 128, 128)
  model.d_downsample = (True, True, False, False)
  model.d_pooling = "mean"
  model.spectral_norm = False
  model.loss = "wasserstein"
  model.gradient_penalty = 10.0
  model.n_critic = 5

  optim = config.optim
  optim.lr = 2e-4
  optim.d_lr = 2e-4
  optim.b1 = 0.0
  optim.b2 = 0.9
  optim.schedule = "linear"
  optim.end_lr_factor = 0.0
  optim.ema_decay = 0.9999

  training = config.training
  training.batch_size = 5 * 64
  training.num_train_steps = 100_000
  training.log_every = 500
  training.checkpoint_every = 5_000
  training.sample_every = 5_000
  training.max_d_loss = 10_000.0

  config.eval.batch_size = 500
  config.eval.num_examples = 10_000
  config.sampling.num_samples = 100
  config.sampling.grid_columns = 10

  if arg == "tiny":
    config.data.name = "synthetic_images"
    config.data.synthetic_shape = (32, 32, 3)
    config.data.num_examples = 2_000
    model.g_features = (32, 32, 32)
    model.d_features = (32, 32, 32, 32)
    training.batch_size = 5 * 16
    training.num_train_steps = 40
    training.log_every = 10
    training.checkpoint_every = 20
    training.sample_every = 0
    config.optim.ema_decay = 0.99
    config.eval.batch_size = 100
    config.eval.num_examples = 200
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'tiny' or nothing.")
  return config
