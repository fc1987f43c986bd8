"""SR3 super-resolution on native 28x28 MNIST: 7x7 -> 28x28 (4x), pixels in [-1, 1].

The conditional model of `--mode=restore --task=superres` (genjax.families.sr3): the UNet sees
the noisy 28x28 digit and the 7x7 input (the 4x4 block mean of the digit) upsampled bicubically
to 28x28, two channels, and predicts the noise, one channel. The network is ddpm_mnist28's (the
unconditional prior of the same benchmark) with a second input channel: channels 32/64/64
(channel_mult 1, 2, 2), 1 residual block per level, attention at 7x7, dropout 0.1
(1,113,089 parameters); 1000 linear-beta steps, epsilon loss; batch 32, Adam 5e-4 (warmup 200),
gradient clipping at 1, EMA 0.999. Super-resolving: DDIM with eta 1 (ancestral) on 50 of the 1000
steps. `configs/sr3_mnist.py:x2` (or `--config.superres.scale=2`) makes it 14x14 -> 28x28.

  # 35 min on the 2-core CPU (800 steps, beside other jobs)
  python -m genjax.main --config=configs/sr3_mnist.py --workdir=workdirs/sr3_mnist \
      --config.training.max_train_minutes=35
  # ~1 min, the pipeline only:
  python -m genjax.main --config=configs/sr3_mnist.py:tiny --workdir=/tmp/sr3_mnist_tiny
  # super-resolve a folder of 7x7 digits with it:
  python -m genjax.main --config=configs/sr3_mnist.py --workdir=workdirs/sr3_mnist \
      --mode=restore --task=superres --scale=4 --input=my_small_digits/

Measured: README, "Restoration".
"""

from pathlib import Path

from genjax.config import config_from_file
from genjax.families.sr3 import from_diffusion_config


def get_config(arg: str = ""):
  """arg: "" (4x), "x2" (2x), "tiny" (4x); ddpm_mnist28's data, network, process, optimizer and
  sampler (and its :tiny), made conditional."""
  if arg not in ("", "x2", "tiny"):
    raise ValueError(f"Unknown config argument {arg!r}; use 'x2', 'tiny' or nothing (4x).")
  scale = 2 if arg == "x2" else 4
  base = config_from_file(Path(__file__).with_name("ddpm_mnist28.py"), "tiny" if arg == "tiny" else "")
  return from_diffusion_config(base, scale)
