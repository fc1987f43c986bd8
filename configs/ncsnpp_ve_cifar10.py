"""score_sde's NCSN++ (continuous VE SDE) on CIFAR-10 (Song et al. 2021b), for TPU/GPU.

UNet channels 128, channel_mult (1, 2, 2, 2), 4 residual blocks per level, BigGAN-style residual
resampling, skip rescaling, attention at 16x16, dropout 0.1, Gaussian Fourier embedding of log sigma
(scale 16); the network output is divided by sigma (epsilon parameterization). Differences from the
paper's NCSN++: average-pool / nearest resampling instead of FIR filters, and no progressive
input/output paths. VE SDE sigma 0.01 to 50, data in [0, 1], denoising score matching summed over
dimensions; batch 128, Adam 2e-4, 5000 warmup steps, clipping at 1, EMA 0.999, 1.3M steps. Samples:
PC, reverse-diffusion predictor + 1 Langevin step at snr 0.16, 1000 steps (paper FID 2.38).

  python -m genjax.main --config=configs/ncsnpp_ve_cifar10.py --mode=summary
  python -m genjax.main --config=configs/ncsnpp_ve_cifar10.py --workdir=gs://<bucket>/ncsnpp_ve
  python -m genjax.main --config=configs/ncsnpp_ve_cifar10.py:tiny --workdir=/tmp/ncsnpp_tiny
"""

from pathlib import Path

from genjax.config import config_from_file


def get_config(arg: str = ""):
  # ddpmpp_vp_cifar10's network, optimizer, schedule and tiny variant; the diffusion defaults
  # already hold sigma 0.01 to 50, the Fourier scale 16 and the PC settings (1 step, snr 0.16).
  config = config_from_file(Path(__file__).with_name("ddpmpp_vp_cifar10.py"), arg)
  config.data.value_range = (0.0, 1.0)
  config.model.embedding = "fourier"
  config.diffusion.process = "ve"
  config.diffusion.reduce = "sum"
  config.optim.ema_decay = 0.999
  config.sampling.predictor = "reverse_diffusion"
  config.sampling.corrector_steps = 1
  return config
