"""The Colab quickstart runs top to bottom on CPU with the tiny config and the local MNIST folder."""

import json
import re

import nbformat
import pytest
from conftest import MNIST_DIR, REPO
from nbclient import NotebookClient


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path, data_env):
  notebook = nbformat.read(REPO / "colab" / "quickstart.ipynb", as_version=4)
  parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
  parameters.source += (
    f'\nCONFIG = "configs/vae_mnist.py:tiny"\nWORKDIR = {json.dumps(str(tmp_path / "work"))}\n'
    f'DATA_DIR = {json.dumps(str(MNIST_DIR))}\n'
    f'OVERRIDES = {{"data.data_dir": {json.dumps(data_env["TFDS_DATA_DIR"])}}}\n'
  )
  NotebookClient(notebook, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(REPO / "colab")}}).execute()
  outputs = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
  assert "samples_0000300.png" in outputs and "interpolations_0000300.png" in outputs
  images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
  assert len(images) == 3
  assert "eval/nll_iwae" in outputs


@pytest.mark.slow
def test_finetune_notebook_executes(tmp_path, data_env, monkeypatch):
  """Pre-train, fine-tune, scratch, LoRA with its merged export, and the GAN augmentation plot, on
  the tiny variants of the demonstration configs (reference statistics in their own folder, so
  other tests' cached protocols cannot clash with the configs')."""
  monkeypatch.setenv("GENJAX_REFERENCE_DIR", str(tmp_path / "reference_stats"))
  notebook = nbformat.read(REPO / "colab" / "finetune.ipynb", as_version=4)
  parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
  parameters.source += (
    f'\nSIZE = "tiny"\nROOT = {json.dumps(str(tmp_path / "runs"))}\n'
    f'DATA_DIR = {json.dumps(str(MNIST_DIR))}\n'
    f'OVERRIDES = {{"data.data_dir": {json.dumps(data_env["TFDS_DATA_DIR"])}}}\n'
  )
  NotebookClient(notebook, timeout=900, kernel_name="python3",
                 resources={"metadata": {"path": str(REPO / "colab")}}).execute()
  outputs = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
  assert "{'loaded': " in outputs and "'new': 0" in outputs  # every parameter loaded
  assert "finetune " in outputs and "scratch " in outputs and "lora_trainable_params=" in outputs
  difference = float(re.search(r"max \|difference\| = (\S+)", outputs).group(1))
  assert difference < 1e-5  # the export samples as the LoRA run (up to float rounding)
  assert "none  MNIST FID" in outputs and "ada   MNIST FID" in outputs
  images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
  assert len(images) == 3
