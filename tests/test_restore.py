"""--mode=restore on the user's files (genjax.restore): fitting, per-file errors that never stop the
rest, measurement consistency of the restorations, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import MNIST_DIR, run_cli
from PIL import Image

from genjax import restore, trainer
from genjax.diffusion import inverse

TINY = {
  "training.num_train_steps": 2,
  "training.checkpoint_every": 2,
  "training.log_every": 2,
  "training.async_checkpoints": False,
  "eval.num_examples": 32,
  "sampling.grid_size": 8,
  "restore.num_steps": 5,
  "restore.batch_size": 4,
}


def untrained_workdir(config, workdir):
  """A workdir holding the step-0 checkpoint of `config`'s initial weights: the tests check the
  plumbing and the measurement consistency, which hold for any network, so none is trained."""
  from genjax.datasets import dataset_info
  from genjax.input_pipeline import TrainData

  experiment = trainer.Experiment(config, workdir, dataset_info(config.data))
  data = TrainData(config, config.training.batch_size)
  experiment.checkpointer.save(0, experiment.init_state(), data.iterator, config)
  experiment.checkpointer.wait()
  experiment.checkpointer.close()
  return workdir


@pytest.fixture(scope="module")
def prior(tmp_path_factory, tfds_dir):
  """An (untrained) ddpm_mnist28:tiny workdir, its config and its Restorer."""
  from genjax.config import apply_overrides, load_config

  config = load_config("configs/ddpm_mnist28.py:tiny")
  apply_overrides(
    config, {"data.manual_dir": str(MNIST_DIR), "data.data_dir": str(tfds_dir), **TINY}
  )
  workdir = untrained_workdir(config, tmp_path_factory.mktemp("prior"))
  return config, workdir, restore.load_restorer(config, workdir)


def digit(size=28, seed=0) -> np.ndarray:
  """A bright ring on black, [size, size] uint8: digit-like enough for the plumbing."""
  yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
  radius = np.hypot(yy, xx)
  ring = np.clip(1 - np.abs(radius - size / 4) / 2, 0, 1)
  noise = np.random.default_rng(seed).normal(0, 0.05, ring.shape)
  return (255 * np.clip(ring + noise, 0, 1)).astype(np.uint8)


def test_a_folder_with_bad_files_restores_the_good_ones_and_names_the_bad(prior, tmp_path):
  config, workdir, restorer = prior
  folder = tmp_path / "in"
  folder.mkdir()
  Image.fromarray(digit()).save(folder / "a_good.png")
  Image.fromarray(digit(20)).save(folder / "b_small.png")
  Image.fromarray(np.stack([digit(64, 1)[:, 8:56]] * 3, -1)).save(folder / "c_rgb.jpg")
  (folder / "d_corrupt.png").write_bytes((folder / "a_good.png").read_bytes()[:40])
  (folder / "e_notes.txt").write_text("not an image")
  request = restore.Request(
    task="denoise", input=str(folder), noise_sigma=0.2, num=2, method="sdedit"
  )
  report = restore.restore_files(config, workdir, request, restorer=restorer)

  assert sorted(report["errors"]) == [str(folder / "d_corrupt.png"), str(folder / "e_notes.txt")]
  assert all(
    "is not a readable image" in message and "'" + str(folder) in message
    for message in report["errors"].values()
  )
  assert sorted(report["restored"]) == [
    str(folder / name) for name in ("a_good.png", "b_small.png", "c_rgb.jpg")
  ]
  notes = {name.rsplit("/", 1)[-1]: entry["notes"] for name, entry in report["restored"].items()}
  assert notes["a_good.png"] == []
  assert notes["b_small.png"] == ["zero-padded from 20x20 to 28x28 pixels"]
  assert notes["c_rgb.jpg"] == [
    "converted from RGB to L",
    "centre-cropped from 48x64 to 48x48 and resized to 28x28 pixels",
  ]
  saved = np.load(folder / "a_good.denoise.npz")
  assert saved["samples"].shape == (2, 28, 28, 1) and str(saved["method"]) == "sdedit"
  assert np.all(np.abs(saved["samples"]) <= 1.0)
  np.testing.assert_allclose(saved["input"][..., 0], digit() / 127.5 - 1, atol=1e-6)
  with Image.open(folder / "a_good.denoise.png") as png:
    assert png.size[0] > 3 * 28  # the input and two restorations side by side
  assert json.loads((folder / "restore_report.json").read_text())["errors"] == report["errors"]
  # Outputs are never taken as inputs by a second run over the same folder.
  again = restore.restore_files(config, workdir, request, restorer=restorer)
  assert sorted(again["restored"]) == sorted(report["restored"])


def test_inpainting_keeps_every_known_pixel(prior, tmp_path):
  config, workdir, restorer = prior
  Image.fromarray(digit()).save(tmp_path / "x.png")
  for method in ("ddnm", "repaint"):  # pigdm keeps them only through its guidance (test_inverse.py)
    request = restore.Request(
      task="inpaint",
      input=str(tmp_path / "x.png"),
      box="8,10,20,18",
      method=method,
      output=str(tmp_path / method),
    )
    report = restore.restore_files(config, workdir, request, restorer=restorer)
    assert not report["errors"], method
    saved = np.load(tmp_path / method / "x.inpaint.npz")
    known = saved["mask"] > 0
    assert known.sum() == 28 * 28 - 12 * 8
    assert not known[10:18, 8:20].any() and known[:10].all()
    np.testing.assert_allclose(saved["samples"][0][known], saved["input"][known], atol=1e-5)


def test_super_resolution_is_consistent_with_its_input(prior, tmp_path):
  config, workdir, restorer = prior
  Image.fromarray(digit(14)).save(tmp_path / "small.png")
  request = restore.Request(
    task="superres", input=str(tmp_path / "small.png"), scale=2, method="ddnm"
  )
  report = restore.restore_files(config, workdir, request, restorer=restorer)
  assert not report["errors"] and report["restored"][str(tmp_path / "small.png")]["notes"] == []
  saved = np.load(tmp_path / "small.superres.npz")
  assert saved["input"].shape == (14, 14, 1) and saved["samples"].shape == (1, 28, 28, 1)
  down = np.asarray(inverse.Downsample(2).forward(saved["samples"]))[0]
  np.testing.assert_allclose(down, saved["input"], atol=2e-3)  # ddnm's projections onto [-1, 1]
  # An input of another size is fitted to 14 x 14 and the report says so.
  Image.fromarray(digit(10)).save(tmp_path / "smaller.png")
  request = restore.Request(task="superres", input=str(tmp_path / "smaller.png"), scale=2)
  report = restore.restore_files(config, workdir, request, restorer=restorer)
  assert report["restored"][str(tmp_path / "smaller.png")]["notes"] == [
    "zero-padded from 10x10 to 14x14 pixels"
  ]


def test_bad_requests_say_what_is_wrong(prior, tmp_path):
  config, workdir, restorer = prior
  Image.fromarray(digit()).save(tmp_path / "x.png")
  Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "mask_small.png")
  path = str(tmp_path / "x.png")

  def error(**fields):
    with pytest.raises(restore.RestoreError) as caught:
      restore.restore_files(
        config, workdir, restore.Request(input=path, **fields), restorer=restorer
      )
    return str(caught.value)

  assert "needs the noise level" in error(task="denoise")
  assert "exactly one of --mask" in error(task="inpaint")
  assert "does not divide" in error(task="superres", scale=3)
  assert "use one of ddnm, pigdm, repaint" in error(task="inpaint", box="0,0,4,4", method="vae")
  request = restore.Request(task="inpaint", input=path, mask=str(tmp_path / "mask_small.png"))
  report = restore.restore_files(config, workdir, request, restorer=restorer)
  assert (
    "is 10x10 pixels but" in report["errors"][path] and "mask_small.png" in report["errors"][path]
  )
  request = restore.Request(task="inpaint", input=path, box="20,20,40,40")
  assert (
    "does not lie inside"
    in restore.restore_files(config, workdir, request, restorer=restorer)["errors"][path]
  )


@pytest.mark.slow
def test_the_command_restores_and_exits_1_naming_the_skipped_file(prior, tmp_path, data_env):
  _, workdir, _ = prior
  Image.fromarray(digit()).save(tmp_path / "good.png")
  (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
  args = [
    "--config=configs/ddpm_mnist28.py:tiny",
    f"--workdir={workdir}",
    "--mode=restore",
    "--task=denoise",
    f"--input={tmp_path}",
    "--noise_sigma=0.3",
    f"--output={tmp_path / 'out'}",
    "--num=2",
  ]
  args += [f"--config.{key}={value}" for key, value in TINY.items() if key.startswith("restore.")]
  result = run_cli(args, data_env)
  assert result.returncode == 1, result.stderr[-2000:]
  assert "restored 1 of 2 images" in result.stderr and "broken.png" in result.stderr
  assert np.load(tmp_path / "out" / "good.denoise.npz")["samples"].shape == (2, 28, 28, 1)


def test_vae_denoises_and_refuses_other_tasks(load, tmp_path):
  config = load(
    "vae_mnist.py:tiny",
    **{
      "training.num_train_steps": 5,
      "training.log_every": 5,
      "eval.num_examples": 100,
      "eval.iwae_samples": 0,
      "training.async_checkpoints": False,
    },
  )
  trainer.train_and_evaluate(config, tmp_path / "vae")
  restorer = restore.load_restorer(config, tmp_path / "vae")
  noisy = np.clip(
    digit()[None, ..., None] / 255.0 + 0.2 * np.random.default_rng(0).normal(size=(1, 28, 28, 1)),
    0,
    1,
  )
  one = restorer.restore(noisy, "denoise", "vae", None, noise_sigma=0.2)
  several = restorer.restore(
    noisy, "denoise", "vae", __import__("jax").random.key(0), noise_sigma=0.2, num=3
  )
  assert one.shape == (1, 1, 28, 28, 1) and several.shape == (1, 3, 28, 28, 1)
  assert np.all((one >= 0) & (one <= 1)) and not np.allclose(several[0, 0], several[0, 1])
  with pytest.raises(restore.RestoreError, match="cannot inpaint"):
    restorer.check("inpaint", "", 0.0, 2)


def test_an_sr3_workdir_super_resolves_at_its_own_scale_only(load, tmp_path):
  config = load("sr3_mnist.py:tiny", **TINY)
  workdir = untrained_workdir(config, tmp_path / "sr3")
  restorer = restore.load_restorer(config, workdir)
  assert restorer.methods("superres") == ("sr3",) and restorer.methods("denoise") == ()
  Image.fromarray(digit(7)).save(tmp_path / "tiny.png")
  request = restore.Request(task="superres", input=str(tmp_path / "tiny.png"), scale=4, num=2)
  report = restore.restore_files(config, workdir, request, restorer=restorer)
  assert report["method"] == "sr3" and not report["errors"]
  assert np.load(tmp_path / "tiny.superres.npz")["samples"].shape == (2, 28, 28, 1)
  with pytest.raises(restore.RestoreError, match="super-resolves by 4x, not --scale=2"):
    restore.restore_files(
      config,
      workdir,
      restore.Request(task="superres", input=str(tmp_path), scale=2),
      restorer=restorer,
    )
  with pytest.raises(restore.RestoreError, match="This sr3 model cannot denoise"):
    restorer.check("denoise", "", 0.1, 2)
