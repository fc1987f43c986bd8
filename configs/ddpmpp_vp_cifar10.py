"""score_sde's DDPM++ (continuous VP SDE) on CIFAR-10 (Song et al. 2021b, Table 3), for TPU/GPU.

UNet channels 128, channel_mult (1, 2, 2, 2), 4 residual blocks per level, BigGAN-style residual
resampling, skip rescaling by 1/sqrt(2), attention at 16x16, dropout 0.1, positional embedding of
999 t (62,859,139 parameters here); VP SDE beta 0.1 to 20, denoising score matching reduced by mean;
batch 128, Adam 2e-4, 5000 warmup steps, clipping at 1, EMA 0.9999, 1.3M steps. Samples: PC with the
Euler-Maruyama predictor and no corrector, 1000 steps. Eval: probability-flow ODE bits/dim with
uniform dequantization (paper: 3.01 for the likelihood-weighted variant, FID 2.92 for this one).

  python -m genjax.main --config=configs/ddpmpp_vp_cifar10.py --mode=summary
  python -m genjax.main --config=configs/ddpmpp_vp_cifar10.py --workdir=gs://<bucket>/ddpmpp_vp
  python -m genjax.main --config=configs/ddpmpp_vp_cifar10.py:tiny --workdir=/tmp/ddpmpp_tiny
"""

from pathlib import Path

from genjax.config import config_from_file
from genjax.diffusion.settings import use_score_sde


def get_config(arg: str = ""):
  # ddpm_cifar10's data, optimizer and batch (and its tiny variant's synthetic data and small UNet).
  config = use_score_sde(config_from_file(Path(__file__).with_name("ddpm_cifar10.py"), arg), "vp")
  config.model.resblock = "biggan"
  config.model.skip_rescale = True
  config.sampling.predictor = "euler_maruyama"
  config.sampling.corrector_steps = 0
  if arg == "tiny":
    config.eval.batch_size = 8
    config.eval.num_examples = 8
    config.eval.rtol = config.eval.atol = 1e-3
  else:
    config.model.num_res_blocks = 4
    config.training.num_train_steps = 1_300_000
  return config
