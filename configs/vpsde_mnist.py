"""The VP SDE (Song et al. 2021b) on MNIST zero-padded to 32x32, pixels in [-1, 1].

The ddpm_mnist UNet (channels 64/128/128, 2 residual blocks per level, attention at 16x16, dropout
0.1, positional embedding of 999 t), continuous VP SDE with beta from 0.1 to 20, denoising score
matching (sigma^2 weighting; --config.diffusion.likelihood_weighting=True
--config.diffusion.importance_sampling=True for likelihood training); batch 64, Adam 2e-4, EMA
0.995. Samples: predictor-corrector (reverse diffusion + 1 Langevin step, snr 0.16), 100 steps.
Eval: probability-flow ODE bits/dim (Hutchinson, Tsit5 at rtol = atol = 1e-5, uniform
dequantization, score_sde convention: + 7 bits for data in [-1, 1]) on 200 test images.

  # 60 min of training on 2 CPU cores (training.max_train_minutes ends it: ddpm_mnist's 100,000
  # steps would take days), then the ODE bits/dim (about 1.5 hours for the 200 test images here):
  python -m genjax.main --config=configs/vpsde_mnist.py --workdir=/tmp/vpsde_mnist
  # 14 min measured on the 2-core CPU shared with other jobs (4.7 min of CPU time), including
  # the first run's MNIST preparation (2.5 min) and the ODE evaluation (4.3 min):
  python -m genjax.main --config=configs/vpsde_mnist.py:tiny --workdir=/tmp/vpsde_mnist_tiny

Expected: digit-like samples after the full run, eval/bpd_ode in eval_<step>.json. Measured
(README results table; 2-core AMD EPYC with AVX-512, quiet): 1,200 steps in 60 min, 1.58 bits/dim
on 50 test images (--config.eval.num_examples=50), Inception FID 117.5 with the PC sampler
(1,000 samples vs 1,000 test images). The tiny run only exercises the pipeline (measured:
eval/bpd_ode = 11.71 on its 16 test images after 40 steps, i.e. an untrained model).
"""

from pathlib import Path

from genjax.config import config_from_file
from genjax.diffusion.settings import use_score_sde


def get_config(arg: str = ""):
  # ddpm_mnist's data, UNet, optimizer and schedule; the sampler defaults are PC at snr 0.16.
  config = use_score_sde(config_from_file(Path(__file__).with_name("ddpm_mnist.py"), arg), "vp")
  if arg == "tiny":
    config.eval.batch_size = 16
    config.eval.num_examples = 16
    config.eval.rtol = config.eval.atol = 1e-3
  else:
    config.training.max_train_minutes = 60.0
    config.sampling.num_steps = 100
    config.eval.batch_size = 50
    config.eval.num_examples = 200
  return config
