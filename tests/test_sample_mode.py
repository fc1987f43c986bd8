"""--mode=sample: any number of samples, drawn in batches into one .npz, and grids of their own size."""

import jax
import numpy as np
import pytest

from genjax import trainer


def listing(directory) -> list[str]:
  return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_samples_are_drawn_in_batches_into_one_file_and_no_checkpoint_moves(load, tmp_path):
  config = load("vae_mnist.py:tiny", **{"training.num_train_steps": 10, "training.log_every": 10,
                                        "eval.num_examples": 100, "eval.iwae_samples": 0,
                                        "training.async_checkpoints": False})
  trainer.train_and_evaluate(config, tmp_path)
  checkpoints = listing(tmp_path / "checkpoints")
  sampling = {"sampling.num_samples": 130, "sampling.batch_size": 50, "sampling.seed": 3,
              "sampling.grid_size": 16}
  config = load("vae_mnist.py:tiny", **sampling)
  paths = trainer.sample(config, tmp_path)
  saved = np.load(tmp_path / "samples" / "samples_0000010_seed3.npz")
  assert saved["samples"].shape == (130, 28, 28, 1) and int(saved["step"]) == 10
  experiment, state, _ = trainer.restore_for_inference(config, tmp_path, None)
  experiment.checkpointer.close()
  key = jax.random.key(3)
  for index, (start, stop) in enumerate([(0, 50), (50, 100), (100, 130)]):
    batch = experiment.sample_fn(experiment.sample_params(state), state.model_state,
                                 jax.random.fold_in(key, index), 50)
    np.testing.assert_array_equal(saved["samples"][start:stop], np.asarray(batch)[: stop - start])
  assert not np.array_equal(saved["samples"][:50], saved["samples"][50:100])
  assert listing(tmp_path / "checkpoints") == checkpoints  # sampling never writes checkpoints
  assert sum(p.name.endswith(".png") for p in paths) == 3  # samples, reconstructions, interpolations


@pytest.mark.slow
def test_diffusion_grids_take_whole_rows_from_a_small_eval_batch(load, tmp_path):
  """12 eval images cannot fill rows of 8 twice: the inpainting/SDEdit grids use one whole row
  (this crashed with "cannot reshape array of shape (12, ...) into shape (-1, 8, ...)")."""
  config = load("ddpm_mnist.py:tiny", **{
    "training.num_train_steps": 1, "training.log_every": 1, "training.async_checkpoints": False,
    "eval.num_examples": 12, "eval.batch_size": 12, "eval.vlb_timesteps": 1,
    "sampling.num_steps": 2, "sampling.edit_num_steps": 2, "sampling.grid_size": 64,
    "sampling.num_samples": 3, "sampling.batch_size": 2, "model.channel_mult": (1,),
  })
  trainer.train_and_evaluate(config, tmp_path)
  trainer.sample(config, tmp_path)
  assert np.load(tmp_path / "samples" / "samples_0000001_seed42.npz")["samples"].shape == (3, 32, 32, 1)
  for grid in ("samples", "inpainting", "sdedit"):
    assert (tmp_path / "samples" / f"{grid}_0000001_seed42.png").is_file()
