"""Sample metrics in the runner (--mode=eval), cached reference statistics, scripts/evaluate.py."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import MNIST_DIR, REPO, run_script

from genjax import parallel
from genjax.evaluation.extractors import MnistExtractor
from genjax.evaluation.params_io import save_params_npz
from genjax.evaluation.reference import ReferenceMismatchError, get_reference, load_reference

SAMPLE_METRICS = ("mnist_fid", "mnist_kid", "mnist_is", "mnist_prd")


def reference_sections(reference_dir, feature_samples, manual_dir="", data_dir=""):
  """The data and eval sections of a 600-example MNIST test-split reference in reference_dir."""
  from genjax.config import base_config

  config = base_config()
  config.data.manual_dir, config.data.data_dir = manual_dir, data_dir
  config.eval.reference_split, config.eval.reference_num_examples = "test", 600
  config.eval.feature_samples, config.eval.reference_dir = feature_samples, str(reference_dir)
  return config.data, config.eval


def test_reference_is_cached_per_protocol_and_a_tampered_file_is_an_error(tmp_path, tfds_dir):
  extractor = MnistExtractor.load()
  mesh = parallel.make_mesh()
  stats, path = get_reference(
    extractor, *reference_sections(tmp_path, 300, str(MNIST_DIR), str(tfds_dir)), mesh
  )
  assert (
    stats.count == 600
    and stats.features.shape == (300, 128)
    and stats.covariance.shape == (128, 128)
  )
  assert stats.protocol["extractor"]["weights_sha256"] == extractor.sha256
  assert path.name == f"mnist_test_mnist_{stats.protocol_sha256[:12]}.npz"
  modified = path.stat().st_mtime_ns
  again, _ = get_reference(extractor, *reference_sections(tmp_path, 300), mesh)  # cached: no data
  assert path.stat().st_mtime_ns == modified
  np.testing.assert_array_equal(again.mean, stats.mean)
  # Other weights (another extractor identity) and another feature_samples: files of their own,
  # the first one untouched.
  params = jax.tree.map(lambda v: np.asarray(v) * 0.5, extractor.variables["params"])
  other_sha = save_params_npz(tmp_path / "other.npz", params)
  other = MnistExtractor.load(tmp_path / "other.npz", other_sha)
  other_stats, other_path = get_reference(
    other, *reference_sections(tmp_path, 300, str(MNIST_DIR), str(tfds_dir)), mesh
  )
  fewer, fewer_path = get_reference(
    extractor, *reference_sections(tmp_path, 200, str(MNIST_DIR), str(tfds_dir)), mesh
  )
  assert len({path, other_path, fewer_path}) == 3 and path.stat().st_mtime_ns == modified
  assert not np.allclose(other_stats.mean, stats.mean) and fewer.features.shape == (200, 128)
  np.testing.assert_allclose(fewer.mean, stats.mean, rtol=1e-6)
  # A file whose contents belong to another protocol (copied by hand): an error naming why.
  fewer_path.replace(path)
  with pytest.raises(ReferenceMismatchError, match="feature_samples: file has 200, requested 300"):
    get_reference(extractor, *reference_sections(tmp_path, 300), mesh)
  assert load_reference(path).count == 600


def vae_config(load, reference_dir, **overrides):
  return load(
    "vae_mnist.py:tiny",
    **{
      "training.num_train_steps": 30,
      "training.log_every": 10,
      "training.checkpoint_every": 30,
      "training.async_checkpoints": False,
      "eval.num_examples": 200,
      "eval.batch_size": 100,
      "eval.iwae_samples": 10,
      "eval.iwae_chunk": 10,
      "sampling.grid_size": 16,
      "eval.sample_metrics": SAMPLE_METRICS,
      "eval.num_samples": 500,
      "eval.sample_batch_size": 200,
      "eval.feature_samples": 400,
      "eval.kid_subset_size": 100,
      "eval.reference_num_examples": 1000,
      "eval.reference_dir": str(reference_dir),
      **overrides,
    },
  )


@pytest.mark.slow
def test_eval_mode_writes_sample_metrics_with_their_protocol(load, tmp_path):
  from genjax import trainer

  config = vae_config(load, tmp_path / "reference")
  trained = trainer.train_and_evaluate(config, tmp_path / "run")
  names = ["fid", "kid", "kid_se", "is", "is_std", "precision", "recall", "density", "coverage"]
  for name in names:
    assert np.isfinite(trained[f"eval/mnist_{name}"]), name
  # 30 VAE steps give blurry mean digits: FID ~730, recall ~0 (the test-vs-train floor is 0.75).
  assert trained["eval/mnist_fid"] > 100.0 and trained["eval/mnist_recall"] < 0.2
  assert 1.0 <= trained["eval/mnist_is"] <= 10.0

  evaluated = trainer.evaluate(config, tmp_path / "run")  # --mode=eval: the same numbers again
  for name in names:
    assert evaluated[f"eval/mnist_{name}"] == pytest.approx(trained[f"eval/mnist_{name}"], rel=1e-5)
  record = json.loads((tmp_path / "run" / "eval_30.json").read_text())
  assert record["metrics"]["eval/mnist_fid"] == pytest.approx(evaluated["eval/mnist_fid"])
  protocol = record["protocol"]
  samples = protocol["sample_metrics"]
  assert protocol["checkpoint_step"] == 30 and samples["num_samples"] == 500
  assert (
    samples["reference_split"] == "train" and samples["sampling"]["seed"] == config.sampling.seed
  )
  assert "fold_in(jax.random.key(0), i)" in samples["sample_seeds"]
  mnist = samples["extractors"]["mnist"]
  assert mnist["extractor"]["weights_sha256"] == MnistExtractor.load().sha256
  assert (
    mnist["reference"]["num_examples"] == 1000 and len(mnist["reference"]["protocol_sha256"]) == 64
  )
  assert samples["genjax_version"] == protocol["genjax_version"]
  assert "k=10 importance samples" in protocol["likelihood_conventions"]["nll_iwae"]
  assert "nats per example" in protocol["likelihood_conventions"]["neg_elbo"]

  # Another protocol (feature_samples) gets its own reference file: the evaluation runs.
  changed = vae_config(load, tmp_path / "reference", **{"eval.feature_samples": 300})
  assert "eval/mnist_fid" in trainer.evaluate(changed, tmp_path / "run")
  assert len(list((tmp_path / "reference").glob("mnist_train_mnist_*.npz"))) == 2
  with pytest.raises(ValueError, match="Unknown sample metric 'mnist_fld'.*mnist_fid"):
    trainer.evaluate(
      vae_config(load, tmp_path / "reference", **{"eval.sample_metrics": ("mnist_fld",)}),
      tmp_path / "run",
    )


def test_evaluate_script_on_padded_signed_npz(data_env, tmp_path, tfds_dir):
  from genjax.config import base_config
  from genjax.datasets import load_source

  data = base_config().data
  data.manual_dir, data.data_dir = str(MNIST_DIR), str(tfds_dir)
  digits = load_source(data, "test", 0).gather(np.arange(1000))["x"].astype(np.float32) / 255.0
  padded = np.pad(digits, ((0, 0), (2, 2), (2, 2), (0, 0))) * 2.0 - 1.0  # 32x32 in [-1, 1]
  np.savez_compressed(tmp_path / "samples.npz", samples=padded)
  command = [
    sys.executable,
    "scripts/evaluate.py",
    f"--samples={tmp_path / 'samples.npz'}",
    "--value_range=-1,1",
    "--metrics=mnist_fid,mnist_kid,mnist_is,mnist_prd",
    "--reference_num_examples=2000",
    "--feature_samples=1000",
    "--kid_subset_size=250",
    f"--reference_dir={tmp_path / 'reference'}",
    f"--output={tmp_path / 'result.json'}",
  ]
  done = subprocess.run(
    command, env=data_env, cwd=REPO, capture_output=True, text=True, timeout=300
  )
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads((tmp_path / "result.json").read_text())
  metrics = result["metrics"]
  # Real test digits against real training digits: 1000 samples bias FID upwards (4.5 here; the full
  # 10k-vs-60k floor is 0.75), a 30-step VAE ~730.
  assert metrics["mnist_fid"] < 8.0
  assert abs(metrics["mnist_kid"]) < 3 * metrics["mnist_kid_se"] + 1e-3
  assert (
    metrics["mnist_is"] > 9.0 and metrics["mnist_precision"] > 0.6 and metrics["mnist_recall"] > 0.6
  )
  assert result["protocol"]["num_samples"] == 1000 and result["protocol"]["value_range"] == [
    -1.0,
    1.0,
  ]
  assert result["protocol"]["extractors"]["mnist"]["reference"]["split"] == "train"

  wrong = subprocess.run(
    command[:3] + ["--value_range=0,1"] + command[4:],
    env=data_env,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert wrong.returncode != 0 and "outside the stated value_range (0, 1)" in wrong.stderr


def test_evaluate_script_crops_padded_samples_to_the_datasets_size(
  data_env, tmp_path, tfds_dir, inception_weights_file
):
  """A 32x32 sample file of a zero-padding MNIST config is compared by its centre 28x28, the size
  of the reference statistics: the padded reference digits themselves then have Inception FID 0
  against them, while --crop=none (the script before the crop) shows the digits at another scale."""
  del inception_weights_file
  from genjax.config import base_config
  from genjax.datasets import load_source

  count = 64
  data = base_config().data
  data.manual_dir, data.data_dir = str(MNIST_DIR), str(tfds_dir)
  digits = load_source(data, "test", 0).gather(np.arange(count))["x"].astype(np.float32) / 255.0
  np.savez_compressed(
    tmp_path / "samples.npz", samples=np.pad(digits, ((0, 0), (2, 2), (2, 2), (0, 0)))
  )
  results = {}
  for crop in ("auto", "none"):
    output = tmp_path / f"{crop}.json"
    run_script(
      "evaluate.py",
      [
        f"--samples={tmp_path / 'samples.npz'}",
        "--metrics=inception_fid",
        "--reference_split=test",
        f"--reference_num_examples={count}",
        f"--batch_size={count}",
        f"--reference_dir={tmp_path / 'reference'}",
        f"--output={output}",
        f"--crop={crop}",
      ],
      data_env,
    )
    results[crop] = json.loads(output.read_text())
  cropped, uncropped = (results[crop]["metrics"]["inception_fid"] for crop in ("auto", "none"))
  assert abs(cropped) < 1e-2 and uncropped > 1.0, (cropped, uncropped)
  assert results["auto"]["protocol"]["compared_size"].startswith("the centre 28x28")
  assert "the samples are 32x32" in results["auto"]["protocol"]["compared_size"]
  assert results["none"]["protocol"]["compared_size"] == "as given"


@pytest.mark.slow
def test_an_experiment_loads_its_extractors_and_references_once(load, tmp_path, monkeypatch):
  """Two evaluations and two protocol records of one experiment load the MNIST classifier and its
  reference statistics once (before evaluators were objects, each evaluation loaded them twice)."""
  from genjax import trainer
  from genjax.datasets import dataset_info
  from genjax.evaluation import sample_metrics

  loads = []
  original = sample_metrics.extractor_from_config
  monkeypatch.setattr(sample_metrics, "extractor_from_config",
                      lambda *args: loads.append(args[0]) or original(*args))
  config = vae_config(load, tmp_path / "reference", **{"eval.num_samples": 200})
  experiment = trainer.Experiment(config, tmp_path / "run", dataset_info(config.data))
  state = experiment.init_state()
  first = trainer.evaluate_state(experiment, state)
  second = trainer.evaluate_state(experiment, state)
  protocols = [trainer.eval_protocol(experiment, step) for step in (1, 2)]
  experiment.checkpointer.close()
  assert loads == ["mnist"]
  assert first["eval/mnist_fid"] == second["eval/mnist_fid"]
  assert protocols[0]["sample_metrics"] == protocols[1]["sample_metrics"]
