"""The Colab notebooks run top to bottom on CPU with tiny configs and the local MNIST folder."""

import itertools
import json
import re

import nbformat
import numpy as np
import pytest
from conftest import MNIST_DIR, REPO
from nbclient import NotebookClient


def execute(name: str, parameters: dict[str, str], data_env, timeout: int):
  """Runs colab/<name> with `parameters` (name -> Python source) appended to its parameters cell,
  the local MNIST folder and the test's tfds folder; returns (text outputs, image outputs)."""
  notebook = nbformat.read(REPO / "colab" / name, as_version=4)
  cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
  parameters = {
    **parameters,
    "DATA_DIR": json.dumps(str(MNIST_DIR)),
    "OVERRIDES": f'{{"data.data_dir": {json.dumps(data_env["TFDS_DATA_DIR"])}}}',
  }
  cell.source += "\n" + "".join(f"{key} = {value}\n" for key, value in parameters.items())
  with pytest.MonkeyPatch.context() as patch:  # the kernel shares the session's compilations
    for key in ("GENJAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
      patch.setenv(key, data_env[key])
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "colab")}}).execute()
  outputs = [o for c in notebook.cells for o in c.get("outputs", [])]
  text = "".join(o.get("text", "") for o in outputs)
  return text, [o for o in outputs if "image/png" in o.get("data", {})]


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path, data_env):
  outputs, images = execute("quickstart.ipynb", {
    "CONFIG": '"configs/vae_mnist.py:tiny"', "WORKDIR": json.dumps(str(tmp_path / "work")),
  }, data_env, timeout=600)
  assert "samples_0000300.png" in outputs and "interpolations_0000300.png" in outputs
  assert len(images) == 4  # three sample grids and the training curve (matplotlib)
  assert "eval/nll_iwae" in outputs


@pytest.mark.slow
def test_finetune_notebook_executes(tmp_path, data_env, monkeypatch):
  """Pre-train, fine-tune, scratch, LoRA with its merged export, and the GAN augmentation plot, on
  the tiny variants of the demonstration configs (reference statistics in their own folder, so
  other tests' cached protocols cannot clash with the configs')."""
  monkeypatch.setenv("GENJAX_REFERENCE_DIR", str(tmp_path / "reference_stats"))
  outputs, images = execute("finetune.ipynb", {
    "SIZE": '"tiny"', "ROOT": json.dumps(str(tmp_path / "runs")),
  }, data_env, timeout=900)
  assert "{'loaded': " in outputs and "'new': 0" in outputs  # every parameter loaded
  assert "finetune " in outputs and "scratch " in outputs and "lora_trainable_params=" in outputs
  difference = float(re.search(r"max \|difference\| = (\S+)", outputs).group(1))
  assert difference < 1e-5  # the export samples as the LoRA run (up to float rounding)
  assert "none  MNIST FID" in outputs and "ada   MNIST FID" in outputs
  assert len(images) == 3


@pytest.mark.slow
def test_inception_fid_notebook_executes(data_env, inception_weights_file):
  """Weights fetched (already there: the script keeps the pinned file), features equal the
  reference fixture, FID/KID of real digits, and the paper-protocol labels."""
  del inception_weights_file
  outputs, _ = execute("inception_fid.ipynb", {"NUM_IMAGES": "24"}, data_env, timeout=900)
  assert "already there with the pinned SHA-256" in outputs
  errors = [float(e) for e in re.findall(r"max relative error vs the reference: (\S+)", outputs)]
  assert len(errors) == 3 and max(errors) < 1e-4
  real = float(re.search(r"real vs real +Inception FID +(\S+)", outputs).group(1))
  noisy = float(re.search(r"real vs noisy +Inception FID +(\S+)", outputs).group(1))
  assert noisy > real > 0
  assert "comparable with papers (50k samples vs train statistics)" in outputs
  assert "not comparable with papers: 10000 samples, the protocol needs 50000" in outputs
  assert "no published Inception-metric protocol for 'mnist'" in outputs


@pytest.mark.slow
def test_gans_notebook_executes(tmp_path, data_env):
  """The MLP GAN with both losses and its gradient-norm plot, then tiny StyleGAN2: its grids,
  truncation from Python (psi = 0 gives one image for every latent) and the W+ projection of three
  test digits (the error falls; --mode=project's files)."""
  outputs, images = execute("gans.ipynb", {
    "SIZE": '"tiny"', "ROOT": json.dumps(str(tmp_path / "runs")),
  }, data_env, timeout=1200)
  for loss in ("minimax", "non_saturating"):
    assert f"{loss} G gradient norm at the first log step:" in outputs
  for grid in ("samples", "truncation", "style_mixing"):
    assert f"{grid}_0000032.png" in outputs
  difference = float(re.search(r"max \|difference\| within the psi = 0 row: (\S+)", outputs).group(1))
  assert difference < 1e-5
  assert "wrote ['progress.png', 'projections.json', 'projections.npz']" in outputs
  errors = re.findall(r"digit\d\.png: MSE (\S+), PSNR (\S+) dB", outputs)
  assert len(errors) == 3 and all(0.0 < float(mse) < 1.0 for mse, _ in errors)
  first, last = json.loads(re.search(r"MSE at the first and last step: (.+)", outputs).group(1))[0]
  assert last < first
  assert len(images) == 7  # gradient norms, MLP samples, three StyleGAN2 grids, psi rows, projection


@pytest.mark.slow
def test_autoguidance_notebook_executes(tmp_path, data_env):
  """A tiny ddpm_mnist_fast run, then the same seeds unguided and at three autoguidance weights
  (each weight its own files, different samples) measured by the MNIST classifier."""
  outputs, images = execute("autoguidance.ipynb", {
    "SIZE": '"tiny"', "ROOT": json.dumps(str(tmp_path / "runs")), "NUM_SAMPLES": "20",
  }, data_env, timeout=900)
  assert "autoguidance weight 2.0 by step 20" in outputs and "checkpoints: [20, 40]" in outputs
  for tag in ("_autoguidance1by20", "_autoguidance2by20", "_autoguidance4by20"):
    assert f"samples_0000040_seed43{tag}.npz" in outputs
  samples = sorted((tmp_path / "runs" / "ddpm_mnist_fast" / "samples").glob("samples_0000040_seed43*.npz"))
  assert len(samples) == 4
  drawn = [np.load(path)["samples"] for path in samples]
  assert all(d.shape == (20, 28, 28, 1) for d in drawn)
  assert all(np.abs(a - b).mean() > 1e-3 for a, b in itertools.pairwise(drawn))
  rows = re.findall(r"^ *([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+)$", outputs, re.MULTILINE)
  assert [float(row[0]) for row in rows] == [0.0, 1.0, 2.0, 4.0]
  assert all(0.0 <= float(value) <= 1.0 for row in rows for value in row[1:])
  assert len(images) == 1


@pytest.mark.slow
def test_restore_notebook_executes(tmp_path, data_env, load):
  """A tiny prior (its initial weights: the notebook's training cell is the quickstart's, tested
  there) denoises, inpaints and super-resolves an MNIST test digit (four samples each, written next
  to the inputs) and prints PSNRs beside the classical ones."""
  from test_restore import untrained_workdir

  prior = untrained_workdir(load("ddpm_mnist28.py:tiny"), tmp_path / "prior")
  outputs, images = execute("restore.ipynb", {
    "SIZE": '"tiny"', "ROOT": json.dumps(str(tmp_path / "restore")), "PRIOR_WORKDIR": json.dumps(str(prior)),
  }, data_env, timeout=900)
  assert "denoise   methods: pigdm, sdedit" in outputs and "inpaint   methods: ddnm, pigdm, repaint" in outputs
  for task in ("denoise", "inpaint", "superres"):
    assert re.search(rf"{task} +\w+ +PSNR of the 4 samples: [\d.]+, [\d.]+, [\d.]+, [\d.]+", outputs), task
  assert "classical baseline:" in outputs
  assert (tmp_path / "restore" / "restored" / "digit.inpaint.npz").is_file()
  assert len(images) == 4  # the digit and one side-by-side PNG per task


@pytest.mark.slow
def test_interpret_notebook_executes(tmp_path, data_env):
  """A tiny VAE run trained by the notebook gets its report (two tools: the traversal with its KL
  ranking, and the memorisation check), whose figures show inline, then a DeepDream."""
  outputs, images = execute("interpret.ipynb", {
    "ROOT": json.dumps(str(tmp_path)), "TOOLS": '["vae_traversal", "memorisation"]',
  }, data_env, timeout=1200)
  assert re.search(r"report\.html \([\d.]+ MB\): checkpoint step \d+ of training.num_train_steps", outputs)
  assert "== vae_traversal: " in outputs and "== memorisation: " in outputs
  assert re.search(r"class:3 from a test digit: J -?[\d.]+ -> [\d.]+, classified \d", outputs)
  summaries = json.loads((tmp_path / "vae_mnist" / "report" / "summaries.json").read_text())
  assert 0.0 <= summaries["tools"]["memorisation"]["features_fraction_below"] <= 1.0
  # training curves, the traversal strips, the memorisation neighbours, the dream progression
  assert len(images) >= 4


@pytest.mark.slow
def test_text2img_notebook_executes(tmp_path, data_env, encoder_dir):
  """Encoder weights (already there), prompt similarities, both tiny stages trained, and one grid
  per typed prompt."""
  del encoder_dir
  outputs, images = execute("text2img.ipynb", {
    "SIZE": '"tiny"', "WORKDIR": json.dumps(str(tmp_path / "run")),
  }, data_env, timeout=900)
  assert "already holds the all-MiniLM-L6-v2 files" in outputs
  assert "pooled embeddings (3, 384) token states (3, 24, 384)" in outputs
  assert "'step': 6" in outputs and "eval/loss" in outputs
  assert "a thick seven -> a-thick-seven_g3_s0.png" in outputs
  assert len(images) == 3
  assert (tmp_path / "run" / "autoencoder" / "eval_10.json").is_file()
