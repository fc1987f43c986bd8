"""How much a StyleGAN2 generator's styles still depend on z: a mode-collapse diagnostic.

Each synthesis layer modulates its input channels by styles s = A(w) (an affine layer, bias
initialised to 1), and weight demodulation cancels any common scale of s. So what carries z into
a conv layer's output is the spread of s over z relative to its size: `relative_spread`, the mean
over channels of std_z(s) divided by the mean over channels of |mean_z(s)|. At initialisation it is
0.6-0.8 in every layer (0.75-0.87 for stylegan2_mnist's generator). A generator that stops
depending on z can let it fall by growing the affine biases. toRGB layers are not demodulated, so
there s's overall scale matters too.

  GENJAX_DATA_DIR=../shared/data/mnist python scripts/stylegan2_style_spread.py \
      --config=configs/stylegan2_mnist.py --workdir=workdirs/stylegan2_mnist [--step=N]

Prints (genjax.gan.stylegan2.style_spread) one JSON line each for the freshly initialised
generator (the config's seed), the restored raw generator and its EMA (the latest checkpoint, or
--step): per layer, std over z and |mean| over z of its styles (averaged over channels) and their
ratio, plus w's spread and the images' per-pixel std over z (constant noise), for --num_z latents
of --seed.
"""

from __future__ import annotations

import json

import jax
from absl import app, flags
from ml_collections import config_flags

from genjax import trainer
from genjax.families.stylegan2 import G_BUFFERS
from genjax.gan.stylegan2 import style_spread

_CONFIG = config_flags.DEFINE_config_file("config", None, "A StyleGAN2 config, path[:arg].")
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "The run's workdir (its checkpoints are read only)."
)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_NUM_Z = flags.DEFINE_integer("num_z", 256, "Latents to measure the spread over.")
_SEED = flags.DEFINE_integer("seed", 7, "Seed of the latents.")


def main(argv):
  del argv
  experiment, state, step = trainer.restore_for_inference(
    _CONFIG.value, _WORKDIR.value, _STEP.value
  )
  initial = experiment.init_state()
  generator = experiment.family.generator
  z = jax.random.normal(jax.random.key(_SEED.value), (_NUM_Z.value, _CONFIG.value.model.latent_dim))
  for name, params, buffers in (
    ("init", initial.params["generator"], initial.model_state[G_BUFFERS]),
    (f"step {step}, raw", state.params["generator"], state.model_state[G_BUFFERS]),
    (f"step {step}, ema", state.ema_params["generator"], state.model_state[G_BUFFERS]),
  ):
    print(
      json.dumps(
        {"generator": name, **style_spread(generator, {"params": params, "buffers": buffers}, z)}
      )
    )


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
