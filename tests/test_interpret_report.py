"""The run report (`--mode=report`, genjax.interpret.report) and `--mode=interpret` on tiny runs
of each family: the page parses, every inline image decodes, every section is there, the figures
exist as PNG and PDF, an unfinished run says how far it got, and bad requests are clear errors."""

from __future__ import annotations

import base64
import html.parser
import io
import json

import pytest
from conftest import run_cli
from PIL import Image

from genjax import interpret, trainer
from genjax.config import apply_overrides
from genjax.interpret import report

SHORT = {
  "training.num_train_steps": 4,
  "training.log_every": 2,
  "training.checkpoint_every": 4,
  "training.eval_every": 0,
  "training.async_checkpoints": False,
  "eval.num_examples": 64,
}
SECTIONS = ("Config", "Training curves", "Latest sample grids", "Evaluations", "Interpretability")


class Page(html.parser.HTMLParser):
  """Collects the headings (h1-h3) and the image sources of an HTML page."""

  def __init__(self):
    super().__init__()
    self.headings, self.images, self._in_heading = [], [], False

  def handle_starttag(self, tag, attrs):
    if tag in ("h1", "h2", "h3"):
      self._in_heading = True
      self.headings.append("")
    if tag == "img":
      self.images.append(dict(attrs)["src"])

  def handle_endtag(self, tag):
    if tag in ("h1", "h2", "h3"):
      self._in_heading = False

  def handle_data(self, data):
    if self._in_heading:
      self.headings[-1] += data


def parse(path) -> Page:
  page = Page()
  page.feed(path.read_text())
  page.close()
  return page


def decoded_images(page: Page) -> list[Image.Image]:
  """Every <img> of the page, decoded (each must be an inline PNG)."""
  pictures = []
  for source in page.images:
    prefix = "data:image/png;base64,"
    assert source.startswith(prefix), source[:40]
    picture = Image.open(io.BytesIO(base64.b64decode(source[len(prefix) :])))
    picture.load()
    pictures.append(picture)
  return pictures


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tfds_dir):
  """name -> (config, workdir) of 4-step runs, trained on first use."""
  from conftest import MNIST_DIR

  from genjax.config import load_config

  runs = {}

  def get(name):
    if name not in runs:
      config = load_config(f"configs/{name}:tiny")
      apply_overrides(
        config, {"data.manual_dir": str(MNIST_DIR), "data.data_dir": str(tfds_dir), **SHORT}
      )
      workdir = tmp_path_factory.mktemp(name.split(".")[0])
      trainer.train_and_evaluate(config, workdir)
      runs[name] = config, workdir
    return runs[name]

  return get


@pytest.mark.slow
@pytest.mark.parametrize(
  "name", ["vae_mnist.py", "dcgan_mnist.py", "stylegan2_mnist.py", "ddpm_mnist28.py"]
)
def test_report_of_a_tiny_run_of_each_family(trained, name):
  config, workdir = trained(name)
  path = report.build_report(config, workdir)
  assert path == workdir / "report.html"
  page = parse(path)
  for section in SECTIONS:
    assert any(h.split(" (")[0] == section for h in page.headings), (section, page.headings)
  tools = interpret.tools_for(config.family)
  assert tools and all(tool in page.headings for tool in tools)
  text = path.read_text()
  assert "Not run" not in text  # every tool of the family applies to MNIST
  assert "Finished: checkpoint step 4 of training.num_train_steps = 4" in text
  pictures = decoded_images(page)
  grids = report.latest_grids(workdir)
  assert grids and len(pictures) >= 1 + len(grids) + len(tools)  # curves, grids, >= 1 per tool
  assert all(min(picture.size) > 8 for picture in pictures)
  written = {p.name for p in (workdir / "report").iterdir()}
  assert "training_curves.png" in written and "training_curves.pdf" in written
  for tool in tools:
    assert any(n.startswith(f"{tool}_") and n.endswith(".pdf") for n in written), tool
  assert f"<h3>Step {4:,}</h3>" in text  # the evaluation, with its protocol
  assert "checkpoint_step" in text
  summaries = json.loads((workdir / "report" / "summaries.json").read_text())
  assert summaries["checkpoint_step"] == 4 and list(summaries["tools"]) == tools
  assert all(summary["seconds"] > 0 for summary in summaries["tools"].values())


@pytest.mark.slow
def test_report_of_an_unfinished_run_says_how_far_it_got(trained):
  config, workdir = trained("vae_mnist.py")
  longer = config.copy_and_resolve_references()
  apply_overrides(longer, {"training.num_train_steps": 10})
  path = report.build_report(longer, workdir, tools=["vae_traversal"])
  text = path.read_text()
  assert "Unfinished run: the latest checkpoint is step 4 of 10 (40.0%" in text
  headings = parse(path).headings
  assert "vae_traversal" in headings and "memorisation" not in headings
  apply_overrides(longer, {"training.max_train_minutes": 10.0})
  text = report.build_report(longer, workdir, tools=[]).read_text()
  assert "Time-limited run: each invocation trains for training.max_train_minutes = 10;" in text
  assert "the latest checkpoint is step 4 " in text and "Unfinished" not in text


def test_report_of_a_workdir_without_a_checkpoint_is_a_clear_error(load, tmp_path):
  with pytest.raises(FileNotFoundError, match="No checkpoint in .*train first with --mode=train"):
    report.build_report(load("vae_mnist.py:tiny"), tmp_path / "empty")
  assert not (tmp_path / "empty" / "report.html").exists()


def test_training_curves_and_latest_grids_read_the_workdir(tmp_path):
  records = [
    {"step": 2, "train/loss": 3.0},
    {"step": 2, "steps_per_sec": 5.0},
    {"step": 4, "train/loss": 2.0},
    {"step": 4, "eval/nll": 9.0},
  ]
  figure = report.training_curves(records)
  titles = [axis.get_title() for axis in figure.axes if axis.get_visible()]
  assert titles == ["train/loss", "eval/nll", "steps_per_sec"]
  lines = figure.axes[0].get_lines()
  assert list(lines[0].get_xdata()) == [2, 4] and list(lines[0].get_ydata()) == [3.0, 2.0]
  assert report.training_curves([]) is None
  samples = tmp_path / "samples"
  samples.mkdir()
  for name in ("samples_0000010.png", "samples_0000200.png", "reconstructions_0000010.png",
               "samples_0000300_seed7.png", "notes.txt"):
    (samples / name).write_bytes(b"")
  grids = report.latest_grids(tmp_path)
  assert {k: v.name for k, v in grids.items()} == {
    "reconstructions": "reconstructions_0000010.png",
    "samples": "samples_0000300_seed7.png",
  }


@pytest.mark.slow
def test_cli_interpret_and_report(trained, data_env):
  _, workdir = trained("vae_mnist.py")
  base = ["--config=configs/vae_mnist.py:tiny", f"--workdir={workdir}",
          f"--config.data.data_dir={data_env['TFDS_DATA_DIR']}"]
  wrong = run_cli([*base, "--mode=interpret", "--tools=diffusion_trajectory"], data_env)
  assert wrong.returncode == 1
  assert "does not apply to the 'vae' family" in wrong.stderr and "vae_traversal" in wrong.stderr
  typo = run_cli([*base, "--mode=interpret", "--tools=vae_travresal"], data_env)
  assert typo.returncode == 1 and "Did you mean 'vae_traversal'" in typo.stderr
  done = run_cli([*base, "--mode=interpret", "--tools=vae_traversal"], data_env)
  assert done.returncode == 0, done.stderr[-3000:]
  assert (workdir / "interpret" / "vae_traversal.json").is_file()
  assert any(p.name.startswith("vae_traversal_") and p.suffix == ".pdf"
             for p in (workdir / "interpret").iterdir())
  page = run_cli([*base, "--mode=report", "--tools=vae_traversal"], data_env)
  assert page.returncode == 0, page.stderr[-3000:]
  assert "vae_traversal" in parse(workdir / "report.html").headings
