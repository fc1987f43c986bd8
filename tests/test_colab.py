"""The Colab quickstart runs top to bottom on CPU with the tiny config and the local MNIST folder."""

import json

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
