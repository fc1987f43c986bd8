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

from pathlib import Path

from genjax.config import config_from_file


def get_config(arg: str = ""):
  config = config_from_file(Path(__file__).with_name("sngan_cifar10.py"), arg)
  model = config.model
  model.d_pooling = "mean"
  model.spectral_norm = False
  model.loss = "wasserstein"
  model.gradient_penalty = 10.0
  config.training.max_d_loss = 10_000.0
  if not arg:  # the tiny variant keeps sngan_cifar10's narrow nets and 40 steps
    model.g_features = (128, 128, 128)
    config.training.num_train_steps = 100_000
  return config
