"""genjax.interpret.deepdream: DeepDream on the committed MNIST classifier, from real test digits.

Every dream uses 2 octaves of 15 steps (the `deepdream` tool's settings), so the compiled octaves
are shared between the tests."""

import json
import types

import jax
import numpy as np
import pytest
from conftest import MNIST_DIR, run_cli
from PIL import Image

from genjax.config import base_config
from genjax.evaluation.extractors import MnistExtractor
from genjax.interpret import TOOLS, NotApplicable
from genjax.interpret import deepdream as D

SETTINGS = {"steps": 15, "octaves": 2}


@pytest.fixture(scope="module")
def variables():
  return MnistExtractor.load().variables


@pytest.fixture(scope="module")
def seven():
  digit, label = D.mnist_test_digit(0, str(MNIST_DIR))
  assert label == 7
  return digit


@pytest.mark.parametrize(("objective", "factor"), [("layer:conv1", 2.0), ("layer:conv2:17", 5.0)])
def test_a_dream_raises_the_chosen_layer_activation(variables, seven, objective, factor):
  final, progression, values = D.dream(
    variables, seven, objective, rng=jax.random.key(0), **SETTINGS
  )
  assert final.shape == (28, 28, 1) and 0.0 <= final.min() and final.max() <= 1.0
  assert len(values) == 31 and values[-1] > factor * values[0] > 0, values
  np.testing.assert_array_equal(progression[0], seven)
  np.testing.assert_array_equal(progression[-1], final)
  # the recorded J is the objective of the returned image
  layer, _, channel = objective[len("layer:") :].partition(":")
  mode = "channel_square" if channel else "mean_square"
  recomputed = D.objective_values(variables, final[None], layer, mode, int(channel or 0))
  np.testing.assert_allclose(recomputed[0], values[-1], rtol=1e-5)


def test_a_class_dream_turns_a_seven_into_a_three(variables, seven):
  final, _, values = D.dream(variables, seven, "class:3", rng=jax.random.key(0), **SETTINGS)
  before, after = D.probabilities(variables, seven), D.probabilities(variables, final)
  assert values[-1] > values[0] + 10.0, values
  assert before.argmax() == 7 and after.argmax() == 3 and after[3] > 0.9


def test_a_dream_from_noise_reaches_the_target_class(variables):
  noise = D.start_image("noise", jax.random.key(1))
  assert noise.shape == (28, 28, 1) and 0.0 <= noise.min() and noise.max() <= 1.0
  start = D.probabilities(variables, noise)
  target = int(np.argsort(start)[0])  # the class the classifier finds least likely
  final, _, values = D.dream(variables, noise, f"class:{target}", rng=jax.random.key(2), **SETTINGS)
  _, logits = D.MnistCNN().apply(variables, np.stack([noise, final]))
  assert logits[1, target] > logits[0, target] + 10.0 and values[-1] == pytest.approx(
    float(logits[1, target]), rel=1e-4
  )
  assert D.probabilities(variables, final).argmax() == target


@pytest.mark.parametrize(
  ("objective", "named"),
  [
    ("layer:conv9", "unknown layer 'conv9'"),
    ("layer:conv1:64", "channel '64' is not in 0..63"),
    ("layer:features:-1", "channel '-1' is not in 0..127"),
    ("class:10", "class '10' is not in 0..9"),
    ("class:seven", "class 'seven'"),
    ("logit:3", "not understood"),
    ("layer:conv1:2:3", "not understood"),
  ],
)
def test_a_bad_objective_names_the_valid_layers_and_ranges(variables, seven, objective, named):
  with pytest.raises(ValueError) as error:
    D.dream(variables, seven, objective, rng=jax.random.key(0))
  message = str(error.value)
  assert named in message
  for listed in ("conv0 (channels 0..31)", "conv2 (channels 0..127)", "logits (channels 0..9)"):
    assert listed in message
  assert '"class:<k>" with k in 0..9' in message


def test_start_images_from_digits_files_and_broken_files(tmp_path):
  digit = D.start_image("digit", data_dir=str(MNIST_DIR), index=3)
  np.testing.assert_array_equal(digit, D.mnist_test_digit(3, str(MNIST_DIR))[0])
  picture = np.zeros((56, 40, 3), np.uint8)
  picture[10:46, 16:24] = 255  # a white bar on black, not square, in colour
  Image.fromarray(picture).save(tmp_path / "bar.png")
  read = D.start_image(str(tmp_path / "bar.png"))
  assert read.shape == (28, 28, 1) and read.dtype == np.float32
  assert read[14, 14, 0] > 0.9 and read[14, 2, 0] < 0.05
  broken = tmp_path / "broken.png"
  broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
  with pytest.raises(ValueError, match="broken.png.*could not be read as an image"):
    D.start_image(str(broken))
  with pytest.raises(FileNotFoundError, match="neither"):
    D.start_image(str(tmp_path / "missing.png"))
  with pytest.raises(FileNotFoundError, match="GENJAX_DATA_DIR"):
    D.mnist_test_digit(0, str(tmp_path))


def test_dream_to_dir_writes_decodable_figures_and_the_record(tmp_path):
  paths = D.dream_to_dir(
    tmp_path / "dream", "class:3", "digit", data_dir=str(MNIST_DIR), num_snapshots=5, **SETTINGS
  )
  names = sorted(path.name for path in paths)
  assert names == sorted(
    ["progression.png", "progression.pdf", "final.png", "final.pdf", "dream.json"]
  )
  for path in paths:
    if path.suffix == ".png":
      with Image.open(path) as image:
        image.verify()
    elif path.suffix == ".pdf":
      assert path.read_bytes().startswith(b"%PDF")
  record = json.loads((tmp_path / "dream" / "dream.json").read_text())
  assert record["objective"] == "class:3" and record["digit_index"] == 0
  assert record["settings"] == {
    "steps": 15,
    "step_size": 0.05,
    "octaves": 2,
    "octave_scale": 1.4,
    "jitter": 2,
    "smoothing": 1.0,
    "num_snapshots": 5,
  }
  assert len(record["values"]) == 31 and record["snapshot_steps"] == [0, 8, 15, 22, 30]
  assert record["final_class"] == 3 and np.argmax(record["start_probabilities"]) == 7


def test_the_tool_dreams_the_digit_class_and_another_from_a_real_digit(tmp_path):
  config = base_config()
  config.family, config.data.manual_dir = "diffusion", str(MNIST_DIR)
  tool = TOOLS.get("deepdream")
  assert tool.families == ("vae", "gan", "stylegan2", "diffusion", "sr3")
  result = tool.run(types.SimpleNamespace(config=config), None, jax.random.key(3))
  label = result.summary["digit_label"]
  classes = [key for key in result.summary if key.startswith("class:")]
  assert classes[0] == f"class:{label}" and len(classes) == 2 and classes[1] != classes[0]
  for key in classes:
    row = result.summary[key]
    assert row["logit_final"] > row["logit_start"] and row["final_class"] == int(key[6:])
  assert list(result.figures) == ["classes"] and len(result.figures["classes"].axes) == 2 * 7
  config.data.manual_dir = str(tmp_path)  # no MNIST files: the report notes it and goes on
  with pytest.raises(NotApplicable, match="real MNIST digit"):
    tool.run(types.SimpleNamespace(config=config), None, jax.random.key(3))


def test_cli_dream_writes_the_progression_and_rejects_a_bad_layer(tmp_path, data_env):
  bad = run_cli(["--mode=dream", f"--workdir={tmp_path}", "--objective=layer:conv9"], data_env)
  assert bad.returncode == 1 and "unknown layer 'conv9'" in bad.stderr and "conv2" in bad.stderr
  assert not (tmp_path / "dream").exists()
  done = run_cli(["--mode=dream", f"--workdir={tmp_path}", "--objective=class:3", "--start=digit:0",
                  "--seed=1"], data_env)
  assert done.returncode == 0, done.stderr[-3000:]
  out = tmp_path / "dream" / "class_3"
  record = json.loads((out / "dream.json").read_text())
  assert record["objective"] == "class:3" and record["digit_index"] == 0 and record["seed"] == 1
  assert np.argmax(record["final_probabilities"]) == 3
  assert {p.name for p in out.iterdir()} >= {"progression.png", "progression.pdf", "final.png"}
