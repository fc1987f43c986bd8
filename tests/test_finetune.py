"""Fine-tuning: initialising from another run's checkpoint (the load table, rules, bad input),
freezing parameters by path, and a fine-tuned run that resumes exactly."""

import json

import jax
import numpy as np
import pytest
from test_runner import assert_same_tree, restored

from genjax import finetune
from genjax.datasets import dataset_info
from genjax.trainer import Experiment, initial_state, train_and_evaluate

POINTS = {  # 2-D diffusion, a few steps, nothing slow at the end
  "training.num_train_steps": 4, "training.log_every": 2, "training.checkpoint_every": 4,
  "training.async_checkpoints": False, "eval.likelihood": "none", "eval.num_examples": 256,
  "eval.batch_size": 256, "eval.sample_metrics": (), "sampling.sampler": "ddim",
  "sampling.num_steps": 4, "sampling.grid_size": 64,
}
CONDITIONAL = {"model.num_classes": 8, "diffusion.label_dropout": 0.1}


@pytest.fixture
def pretrained(load, tmp_path):
  """An unconditional 2-D diffusion run of 4 steps: its workdir."""
  workdir = tmp_path / "pretrained"
  train_and_evaluate(load("diffusion_8gaussians.py:tiny", **POINTS), workdir)
  return workdir


def _initial_params(config, workdir):
  experiment = Experiment(config, workdir, dataset_info(config.data))
  state = initial_state(experiment)
  experiment.checkpointer.close()
  return jax.device_get(state)


def test_the_load_table_of_a_model_with_one_new_head(load, pretrained, tmp_path):
  """A class-conditional model from an unconditional one: every parameter but the new class
  embedding is loaded with the source's EMA values; the embedding is new; nothing is skipped."""
  config = load("diffusion_8gaussians.py:tiny", **POINTS, **CONDITIONAL,
                init_from=str(pretrained))
  state = _initial_params(config, tmp_path / "finetune")
  table = json.loads((tmp_path / "finetune" / "init_from.json").read_text())
  assert table["step"] == 4 and table["weights"] == "EMA"
  assert table["new"] == ["Embed_0/embedding [9, 64]"]
  assert table["skipped"] == [] and table["adapted"] == []
  source, _ = restored(load("diffusion_8gaussians.py:tiny", **POINTS), pretrained)
  flat_source = finetune._flat(jax.device_get(source.ema_params))
  flat_loaded = finetune._flat(state.params)
  assert len(table["loaded"]) == len(flat_source) == len(flat_loaded) - 1
  for path, value in flat_source.items():
    np.testing.assert_array_equal(flat_loaded[path], value)
  assert_same_tree(state.params, state.ema_params)
  assert int(state.step) == 0


def test_shape_changes_need_a_rule_and_the_class_embedding_rule_keeps_the_null_row():
  fresh = np.zeros((11, 3), np.float32)  # 10 classes + "no label"
  source = np.arange(18, dtype=np.float32).reshape(6, 3)  # 5 classes + "no label"
  table = finetune.InitTable("src", 1, "EMA")
  with pytest.raises(finetune.InitFromError, match=r"`Embed_0/embedding` is \[6, 3\].*\[11, 3\]"):
    finetune.initialise_params({"Embed_0": {"embedding": fresh}}, {"Embed_0": {"embedding": source}},
                               (), {}, table)
  params = finetune.initialise_params(
    {"Embed_0": {"embedding": fresh}}, {"Embed_0": {"embedding": source}},
    ("extend_class_embedding",), {"null_label_row": True}, table,
  )
  adapted = params["Embed_0"]["embedding"]
  np.testing.assert_array_equal(adapted[:5], source[:5])  # the old classes
  np.testing.assert_array_equal(adapted[5:10], 0.0)  # the new classes keep their fresh rows
  np.testing.assert_array_equal(adapted[10], source[5])  # "no label" stays the last row
  assert table.adapted == ["Embed_0/embedding: extend_class_embedding, [6, 3] -> [11, 3]"]


def test_bad_init_from_is_a_clear_error(load, pretrained, tmp_path):
  missing = load("diffusion_8gaussians.py:tiny", **POINTS, init_from=str(tmp_path / "nowhere"))
  with pytest.raises(finetune.InitFromError, match="does not exist"):
    _initial_params(missing, tmp_path / "a")
  (tmp_path / "empty").mkdir()
  empty = load("diffusion_8gaussians.py:tiny", **POINTS, init_from=str(tmp_path / "empty"))
  with pytest.raises(finetune.InitFromError, match="has no checkpoint"):
    _initial_params(empty, tmp_path / "b")
  gan = load("gan_8gaussians.py:tiny", init_from=str(pretrained))
  with pytest.raises(finetune.InitFromError, match="is a 'diffusion' run, but this config is a 'gan'"):
    _initial_params(gan, tmp_path / "c")
  wrong_step = load("diffusion_8gaussians.py:tiny", **POINTS, init_from=str(pretrained), init_step=3)
  with pytest.raises(finetune.InitFromError, match=r"its steps are \[4\]"):
    _initial_params(wrong_step, tmp_path / "d")


def test_frozen_parameters_stay_bitwise_unchanged_and_the_rest_trains(load, tmp_path):
  from conftest import train_on_synthetic_data

  config = load("vae_mnist.py:tiny", **{
    "data.name": "synthetic_images", "data.synthetic_shape": (16, 16, 1), "data.num_examples": 512,
    "training.batch_size": 32, "optim.freeze": ("^encoder/Dense_0/",),
  })
  experiment, before, state, _ = train_on_synthetic_data(config, tmp_path, steps=20)
  experiment.checkpointer.close()
  after = jax.device_get(state.params)
  for name in ("kernel", "bias"):
    np.testing.assert_array_equal(after["encoder"]["Dense_0"][name], before["encoder"]["Dense_0"][name])
  assert not np.array_equal(after["encoder"]["Dense_1"]["kernel"], before["encoder"]["Dense_1"]["kernel"])
  assert not np.array_equal(after["decoder"]["Dense_0"]["kernel"], before["decoder"]["Dense_0"]["kernel"])


@pytest.mark.parametrize("patterns, message", [
  (("^encoder/Dense_9",), "matches no parameter.*encoder/Dense_0/kernel"),
  (("coder",), "freezes every parameter"),
])
def test_bad_freeze_patterns_list_the_parameter_paths(load, tmp_path, patterns, message):
  config = load("vae_mnist.py:tiny", **{"optim.freeze": patterns})
  with pytest.raises(ValueError, match=message):
    Experiment(config, tmp_path, dataset_info(config.data))


def test_a_fine_tuned_run_resumes_exactly(load, pretrained, tmp_path):
  config = dict(**POINTS, **CONDITIONAL, init_from=str(pretrained))
  config["optim.freeze"] = ("^Dense_0/",)
  straight = load("diffusion_8gaussians.py:tiny", **{**config, "training.num_train_steps": 8})
  train_and_evaluate(straight, tmp_path / "straight")
  train_and_evaluate(load("diffusion_8gaussians.py:tiny", **config), tmp_path / "split")
  # The second invocation resumes its own step-4 checkpoint; init_from is ignored from then on.
  train_and_evaluate(straight, tmp_path / "split")
  a, _ = restored(straight, tmp_path / "straight")
  b, _ = restored(straight, tmp_path / "split")
  assert_same_tree(a, b)


def test_init_include_loads_only_the_selected_paths():
  fresh = {"generator": {"w": np.zeros(2, np.float32)}, "discriminator": {"w": np.zeros(2, np.float32)}}
  source = {"generator": {"w": np.ones(2, np.float32)}, "discriminator": {"w": np.ones(2, np.float32)}}
  table = finetune.InitTable("src", 1, "EMA")
  params = finetune.initialise_params(fresh, source, (), {}, table, include="^generator/")
  np.testing.assert_array_equal(params["generator"]["w"], 1.0)
  np.testing.assert_array_equal(params["discriminator"]["w"], 0.0)
  assert table.loaded == ["generator/w [2]"] and table.not_selected == ["discriminator/w [2]"]
  assert table.skipped == []
  with pytest.raises(finetune.InitFromError, match="selects no parameter.*generator/w"):
    finetune.initialise_params(fresh, source, (), {}, table, include="^encoder/")


def test_a_networks_buffers_come_with_it_and_the_rest_of_model_state_starts_fresh(load, tmp_path):
  """StyleGAN2 from a checkpoint whose w_avg, constant noise maps and pl_mean differ from a fresh
  run's: G's buffers are loaded with G (and stay fresh when only D is selected); pl_mean is not."""
  from genjax.input_pipeline import TrainData

  synthetic = {"data.name": "synthetic_images", "data.synthetic_shape": (32, 32, 1),
               "data.num_examples": 64}
  config = load("stylegan2_mnist.py:tiny", **synthetic)
  experiment = Experiment(config, tmp_path / "source", dataset_info(config.data))
  fresh = experiment.init_state()
  source = fresh.replace(model_state={
    **fresh.model_state,
    "g_buffers": jax.tree.map(lambda leaf: leaf + 1.0, fresh.model_state["g_buffers"]),
    "pl_mean": fresh.model_state["pl_mean"] + 5.0,
  })
  experiment.checkpointer.save(4, source, TrainData(config, config.training.batch_size).iterator, config)
  experiment.checkpointer.wait()
  experiment.checkpointer.close()
  fresh, source = jax.device_get(fresh), jax.device_get(source)

  both = _initial_params(load("stylegan2_mnist.py:tiny", **synthetic,
                              init_from=str(tmp_path / "source")), tmp_path / "both")
  assert_same_tree(both.model_state["g_buffers"], source.model_state["g_buffers"])
  assert float(both.model_state["pl_mean"]) == 0.0
  table = json.loads((tmp_path / "both" / "init_from.json").read_text())
  assert "generator/g_buffers/mapping/w_avg [16]" in table["loaded"]
  assert table["new"] == [] and table["skipped"] == []

  only_d = _initial_params(load("stylegan2_mnist.py:tiny", **synthetic,
                                init_from=str(tmp_path / "source"), init_include="^discriminator/"),
                           tmp_path / "only_d")
  assert_same_tree(only_d.model_state["g_buffers"], fresh.model_state["g_buffers"])
  table = json.loads((tmp_path / "only_d" / "init_from.json").read_text())
  assert "generator/g_buffers/mapping/w_avg [16]" in table["not_selected"]
