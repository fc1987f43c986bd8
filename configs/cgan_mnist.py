"""A class-conditional DCGAN on MNIST (32x32): conditional batch norm in G, projection D.

The nets of dcgan_mnist.py made class-conditional as in Miyato & Koyama 2018: every batch norm of G
takes a per-class gain and bias, and D adds <embed(y), phi(x)> to its logit, phi(x) the flattened
4x4x256 features. Spectral normalization on D and the hinge loss (the cGAN setting of that paper),
Adam 2e-4 (b1 0.5, b2 0.999), batch 64, EMA 0.999 of G. D sees real digits with their labels and
fakes generated for the same labels; G updates draw labels uniformly.

  python -m genjax.main --config=configs/cgan_mnist.py --workdir=/tmp/cgan_mnist
  python -m genjax.main --config=configs/cgan_mnist.py:tiny --workdir=/tmp/cgan_tiny  # ~1 min

Expected (measured, README results table): after the 3,000-step run
samples/class_conditional_0003000.png shows row k drawing digit k, MNIST FID 15.9, IS 9.54 (about
9.5 min on the quiet 2-core CPU); the tiny run only shows blobs.
"""

from pathlib import Path

from genjax.config import config_from_file


def get_config(arg: str = ""):
  config = config_from_file(Path(__file__).with_name("dcgan_mnist.py"), arg)
  model = config.model
  model.conditional = True
  model.d_norm = "none"
  model.spectral_norm = True
  model.loss = "hinge"
  return config
