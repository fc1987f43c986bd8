"""SNGAN (Miyato et al. 2018) on CIFAR-10: the ResNet of their Table 4 with the hinge loss.

G: z (128) -> dense 4x4x256 -> 3 up-sampling residual blocks (256 channels, batch norm, ReLU,
nearest up-sampling) -> BN, ReLU, 3x3 conv, tanh: 4,276,739 parameters. D with spectral norm on
every layer: an optimized down block 128, a down block 128, two blocks 128, ReLU, global sum
pooling, dense: 1,053,825 parameters. Hinge loss, n_dis = 5 critic updates per G update, 64 images
per update (training.batch_size = 5 x 64 = 320 real images per step), Adam 2e-4 (b1 0, b2 0.9) for
both, linearly decayed to 0 over 50,000 generator updates, EMA 0.9999 of G for evaluation.
model.conditional=True gives the cGAN of Miyato & Koyama 2018 (conditional BN, projection D).

  python -m genjax.main --config=configs/sngan_cifar10.py --workdir=/tmp/sngan_cifar10   # TPU/GPU
  python -m genjax.main --config=configs/sngan_cifar10.py --mode=summary  # total_params=5330564
  python -m genjax.main --config=configs/sngan_cifar10.py:tiny --workdir=/tmp/sngan_tiny  # CPU

The full run needs CIFAR-10 prepared by tfds (or its files in data.manual_dir). Paper result:
Inception score 8.22, FID 21.7 (unconditional, 50k samples); not yet reproduced here. Evaluation
follows that protocol (genjax/evaluation/paper_protocols.py): Inception FID and KID of 50k EMA
samples against the statistics of all 50k training images, TF FID input handling; the Inception
Score needs pytorch-fid's weights (scripts/get_inception_weights.py --source=pytorch-fid, then
add "inception_is" to eval.sample_metrics). The tiny
variant trains narrow nets on data.name="synthetic_images" and only checks that everything runs.
"""

from genjax.evaluation.paper_protocols import use_paper_protocol
from genjax.families import family_config


def get_config(arg: str = ""):
  config = family_config("gan")  # pixels in [-1, 1], Adam 2e-4 for G and D
  config.data.name = "cifar10"

  model = config.model
  model.network = "resnet"
  model.latent_dim = 128
  model.g_features = (256, 256, 256)
  model.d_features = (128, 128, 128, 128)
  model.d_downsample = (True, True, False, False)
  model.spectral_norm = True
  model.loss = "hinge"
  model.n_critic = 5

  optim = config.optim
  optim.b1 = 0.0
  optim.b2 = 0.9
  optim.schedule = "linear"  # to 0 (optim.end_lr_factor)
  optim.ema_decay = 0.9999

  training = config.training
  training.batch_size = 5 * 64
  training.num_train_steps = 50_000
  training.log_every = 500
  training.checkpoint_every = 5_000
  training.sample_every = 5_000
  training.max_d_loss = 100.0

  config.eval.num_examples = 10_000
  config.sampling.grid_size = 100
  config.sampling.grid_columns = 10

  if arg == "tiny":
    config.data.name = "synthetic_images"
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
  else:
    use_paper_protocol(config)  # Inception FID/KID: 50k samples vs train statistics
  return config
