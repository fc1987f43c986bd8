"""Configs: every file loads (full and tiny), keys are locked, typos name the nearest keys."""

from pathlib import Path

import pytest
from conftest import REPO, run_cli

from genjax.config import apply_overrides, base_config, load_config, unknown_key_message

CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.py"))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_loads_with_a_tiny_variant_and_documents_its_command(name):
  path = REPO / "configs" / name
  full, tiny = load_config(str(path)), load_config(f"{path}:tiny")
  assert full.family and tiny.family == full.family
  assert tiny.training.num_train_steps <= full.training.num_train_steps
  module_doc = path.read_text().split('"""')[1]
  assert "python -m genjax.main" in module_doc and f"configs/{name}" in module_doc
  with pytest.raises(ValueError, match="tiny"):
    load_config(f"{path}:tinny")


@pytest.mark.parametrize("name", CONFIGS)
def test_configs_share_one_vocabulary(name):
  config = load_config(str(REPO / "configs" / name))
  shared = set(base_config().keys())
  assert shared <= set(config.keys()), f"{name} lacks sections {shared - set(config.keys())}"
  for key in ("num_train_steps", "batch_size", "log_every", "checkpoint_every"):
    assert key in config.training
  assert "lr" in config.optim and "seed" in config


def test_unknown_key_is_an_error_naming_the_nearest_keys():
  config = base_config()
  config.lock()
  with pytest.raises(KeyError, match="optim.lr"):
    apply_overrides(config, {"optim.lrr": 1e-3})
  message = unknown_key_message(config, "training.num_train_step")
  assert "training.num_train_steps" in message
  apply_overrides(config, {"optim.lr": 3e-4, "data.value_range": (-1.0, 1.0)})
  assert config.optim.lr == 3e-4 and tuple(config.data.value_range) == (-1.0, 1.0)


def test_cli_rejects_a_config_typo_with_one_clear_line(data_env):
  result = run_cli(["--config=configs/vae_mnist.py:tiny", "--workdir=/tmp/unused",
                    "--config.optim.lrr=0.1"], data_env, timeout=120)
  assert result.returncode == 2
  assert "genjax: error: Unknown config key 'optim.lrr'" in result.stderr
  assert "optim.lr" in result.stderr.split("Unknown config key")[1]
  assert "Traceback" not in result.stderr
  assert not Path("/tmp/unused").exists()


def test_vae_summary_matches_burda_architecture(load):
  from genjax.trainer import summary

  text = summary(load("vae_mnist.py"))
  # encoder 784-200-200-(50+50), decoder 50-200-200-784, with biases
  encoder = 784 * 200 + 200 + 200 * 200 + 200 + 2 * (200 * 50 + 50)
  decoder = 50 * 200 + 200 + 200 * 200 + 200 + 200 * 784 + 784
  assert text.splitlines()[-1] == f"total_params={encoder + decoder}"
  assert f"encoder: {encoder:,} parameters" in text and f"decoder: {decoder:,} parameters" in text


@pytest.mark.parametrize("family", ["vae", "gan", "diffusion"])
def test_family_config_adds_the_family_keys_and_builds_its_default_network(family):
  """Every family has the same parts: add_defaults(config) and a network chosen by model.network
  from the registry in models/<family>.py; the defaults alone make a family that initialises."""
  import jax

  from genjax import parallel
  from genjax.datasets import dataset_info
  from genjax.families import family_config, get_family
  from genjax.trainer import dummy_batch

  config = family_config(family)
  assert config.family == family and "network" in config.model and "name" not in config.model
  config.data.name = "synthetic_images"  # 32x32x3, as CIFAR-10
  info = dataset_info(config.data)
  built = get_family(family)(config, info, parallel.make_mesh())
  params, _ = jax.eval_shape(built.init, jax.random.key(0), dummy_batch(built.example_shape))
  assert jax.tree.leaves(params)


def test_a_renamed_key_fails_naming_the_new_key(tmp_path):
  """Configs written for an older genjax that set model.name get an error naming model.network,
  from the config file and from a --config.model.name override."""
  old = tmp_path / "old_diffusion.py"
  old.write_text(
    "from genjax.families import family_config\n\n"
    "def get_config():\n"
    "  config = family_config('diffusion')\n"
    "  config.model.name = 'unet'\n"
    "  return config\n"
  )
  with pytest.raises(ValueError, match="'model.name' was renamed to 'model.network'"):
    load_config(str(old))
  config = load_config(str(REPO / "configs" / "ddpm_mnist.py"))
  with pytest.raises(KeyError, match="renamed to 'model.network'"):
    apply_overrides(config, {"model.name": "unet"})
