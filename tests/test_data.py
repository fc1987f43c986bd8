"""The input pipeline on real MNIST and the generated datasets."""

import shutil

import numpy as np
import pytest
from conftest import MNIST_DIR

from genjax.config import apply_overrides, base_config
from genjax.datasets import DataError, load_source, ring_modes
from genjax.input_pipeline import EpochShuffledBatches, TrainData, eval_batches


def mnist_config(tfds_dir, **overrides):
  config = base_config()
  apply_overrides(config, {"data.manual_dir": str(MNIST_DIR), "data.data_dir": str(tfds_dir), **overrides})
  return config


def test_training_batches_visit_every_example_once_per_epoch_reshuffled_each_epoch():
  """10 examples (the odd ones: a process's shard) in batches of 4: the endless stream is
  epoch 0's permutation, then epoch 1's (a different one), ...; batch 2 spans both epochs, and a
  fresh instance (a resumed run) gives the same batches in any order of requests."""
  indices = np.arange(1, 20, 2)
  batches = EpochShuffledBatches(indices, 4, seed=7)
  stream = np.concatenate([batches(b) for b in range(10)])  # 40 positions: epochs 0-3
  for epoch in range(4):
    assert sorted(stream[10 * epoch: 10 * (epoch + 1)]) == list(indices)
  assert not np.array_equal(stream[:10], stream[10:20])
  assert not np.array_equal(stream[:10], indices)
  resumed = EpochShuffledBatches(indices, 4, seed=7)
  for b in (9, 2, 0, 5):
    np.testing.assert_array_equal(resumed(b), stream[4 * b: 4 * (b + 1)])
  assert not np.array_equal(EpochShuffledBatches(indices, 4, seed=8)(0), batches(0))


def test_mnist_batches_are_binarized_shuffled_and_labelled(tfds_dir):
  config = mnist_config(tfds_dir, **{"data.binarize": "dynamic"})
  data = TrainData(config, local_batch_size=64)
  assert len(data.source) == 60_000 and data.info.num_classes == 10
  batch = next(data)
  assert batch["x"].shape == (64, 28, 28, 1) and batch["x"].dtype == np.float32
  assert set(np.unique(batch["x"])) <= {0.0, 1.0}
  assert 0.05 < batch["x"].mean() < 0.3  # MNIST ink fraction ~0.13
  assert batch["label"].shape == (64,) and len(set(batch["label"].tolist())) > 5


def test_same_seed_same_stream_and_iterator_state_resumes_exactly(tfds_dir):
  config = mnist_config(tfds_dir, **{"data.binarize": "dynamic"})
  first, second = TrainData(config, 32), TrainData(config, 32)
  for _ in range(3):
    a, b = next(first), next(second)
    np.testing.assert_array_equal(a["x"], b["x"])
  state = first.iterator.get_state()
  expected = [next(first) for _ in range(3)]
  resumed = TrainData(config, 32)
  resumed.iterator.set_state(state)
  for want in expected:
    got = next(resumed)
    np.testing.assert_array_equal(got["x"], want["x"])  # same images AND same binarization noise
    np.testing.assert_array_equal(got["label"], want["label"])
  other_seed = TrainData(mnist_config(tfds_dir, **{"data.binarize": "dynamic"}, seed=1), 32)
  assert not np.array_equal(next(other_seed)["label"], next(TrainData(config, 32))["label"])


def test_value_range_dequantization_and_padding(tfds_dir):
  config = mnist_config(tfds_dir, **{"data.value_range": (-1.0, 1.0), "data.image_size": 32,
                                     "data.dequantize": True})
  x = next(TrainData(config, 16))["x"]
  assert x.shape == (16, 32, 32, 1)
  assert x.min() >= -1.0 and x.max() <= 1.0
  assert np.all(x[:, :2] == -1.0) and np.all(x[:, :, -2:] == -1.0)  # zero padding maps to -1
  assert len(np.unique(x)) > 1000  # dequantization noise makes values continuous


def test_eval_batches_cover_the_split_once_with_padding_masked(tfds_dir):
  config = mnist_config(tfds_dir)
  batches = list(eval_batches(config.data, 300, num_examples=0, data_seed=0, noise_seed=0))
  assert len(batches) == 34  # ceil(10000 / 300)
  assert sum(b["mask"].sum() for b in batches) == 10_000
  labels = np.concatenate([b["label"][b["mask"] > 0] for b in batches])
  source = load_source(config.data, "test", 0)
  np.testing.assert_array_equal(labels, source.arrays["label"])


def test_missing_data_folder_says_how_to_provide_mnist(tmp_path):
  config = base_config()
  apply_overrides(config, {"data.manual_dir": str(tmp_path / "nowhere"), "data.data_dir": str(tmp_path)})
  with pytest.raises(DataError, match="GENJAX_DATA_DIR") as error:
    load_source(config.data, "train", 0)
  assert "does not exist" in str(error.value) and "train-images-idx3-ubyte.gz" in str(error.value)


def test_file_with_wrong_checksum_is_refused(tmp_path):
  folder = tmp_path / "mnist"
  shutil.copytree(MNIST_DIR, folder)
  labels = folder / "t10k-labels-idx1-ubyte.gz"
  labels.chmod(0o644)
  labels.write_bytes(labels.read_bytes()[:-10])  # truncated download
  config = base_config()
  apply_overrides(config, {"data.manual_dir": str(folder), "data.data_dir": str(tmp_path / "tfds")})
  with pytest.raises(DataError, match="checksum"):
    load_source(config.data, "train", 0)


def test_eight_gaussians_lie_on_the_ring():
  config = base_config()
  apply_overrides(config, {"data.name": "8gaussians", "data.num_examples": 4000})
  source = load_source(config.data, "train", 0)
  points, labels = source.arrays["x"], source.arrays["label"]
  distance = np.linalg.norm(points - ring_modes(8, 2.0)[labels], axis=1)
  assert points.shape == (4000, 2) and distance.max() < 0.15
  assert np.bincount(labels, minlength=8).min() > 400
  test_points = load_source(config.data, "test", 0).arrays["x"]
  assert not np.array_equal(points, test_points)  # train and test are different draws


@pytest.mark.parametrize("name", ["swissroll", "checkerboard", "25gaussians", "synthetic_images"])
def test_generated_datasets_are_deterministic(name):
  config = base_config()
  apply_overrides(config, {"data.name": name, "data.num_examples": 256})
  a, b = load_source(config.data, "train", 3), load_source(config.data, "train", 3)
  np.testing.assert_array_equal(a.arrays["x"], b.arrays["x"])
  assert np.all(np.isfinite(a.arrays["x"].astype(np.float32)))
  if name == "checkerboard":
    x = a.arrays["x"]
    assert np.all((np.floor(x[:, 0]) + np.floor(x[:, 1])) % 2 == 0)  # only dark squares


def test_classes_and_train_examples_select_a_fixed_subset(tfds_dir):
  config = mnist_config(tfds_dir, **{"data.classes": (5, 6, 7, 8, 9), "data.train_examples": 300})
  train = load_source(config.data, "train", config.seed)
  test = load_source(config.data, "test", config.seed)
  full_test = load_source(mnist_config(tfds_dir).data, "test", config.seed)
  assert len(train) == 300 and set(np.unique(train.arrays["label"])) == {5, 6, 7, 8, 9}
  # The test split keeps every test image of those classes, and only them.
  expected = np.isin(full_test.arrays["label"], (5, 6, 7, 8, 9)).sum()
  assert len(test) == expected and set(np.unique(test.arrays["label"])) == {5, 6, 7, 8, 9}
  again = load_source(config.data, "train", 99)  # the subset depends on data.subset_seed only
  np.testing.assert_array_equal(train.arrays["x"], again.arrays["x"])
  other = load_source(mnist_config(tfds_dir, **{"data.classes": (5, 6, 7, 8, 9),
                                                "data.train_examples": 300,
                                                "data.subset_seed": 1}).data, "train", 0)
  assert not np.array_equal(train.arrays["label"], other.arrays["label"])
  batch = next(TrainData(config, 100))
  assert set(np.unique(batch["label"])) <= {5, 6, 7, 8, 9}


def test_bad_class_selection_is_a_clear_error(tfds_dir):
  with pytest.raises(ValueError, match=r"data.classes=\(3, 12\) must be labels of mnist.*0..9"):
    load_source(mnist_config(tfds_dir, **{"data.classes": (3, 12)}).data, "test", 0)
  with pytest.raises(ValueError, match="data.train_examples=70000 is more than the 60000"):
    load_source(mnist_config(tfds_dir, **{"data.train_examples": 70_000}).data, "train", 0)


def test_subset_complement_is_the_rest_of_the_training_split(tfds_dir):
  chosen = mnist_config(tfds_dir, **{"data.train_examples": 1000})
  rest = mnist_config(tfds_dir, **{"data.train_examples": 1000, "data.subset_complement": True})
  few, many = load_source(chosen.data, "train", 0), load_source(rest.data, "train", 0)
  assert len(few) == 1000 and len(many) == 59_000
  everything = load_source(mnist_config(tfds_dir).data, "train", 0).arrays["x"]
  flat = lambda x: {row.tobytes() for row in x.reshape(len(x), -1)}
  assert flat(few.arrays["x"]) | flat(many.arrays["x"]) == flat(everything)
  assert len(flat(few.arrays["x"]) & flat(many.arrays["x"])) <= 5  # MNIST repeats a few digits


def test_decoded_split_is_stored_once_and_a_bad_file_is_decoded_again(tfds_dir, caplog, monkeypatch):
  """The first process decodes MNIST's test split and stores it beside the prepared files; a new
  process (here: the in-process cache cleared) reads the same arrays back without decoding; a
  truncated file is decoded again and replaced."""
  from genjax import datasets

  data = mnist_config(tfds_dir).data
  datasets._load_tfds_cached.cache_clear()
  first = load_source(data, "test", seed=0).arrays
  stored = list((tfds_dir / "mnist").glob(f"*/{datasets.DECODED_FOLDER}/test-*-28px.npz"))
  assert len(stored) == 1 and first["x"].shape == (10_000, 28, 28, 1)
  datasets._load_tfds_cached.cache_clear()
  stored[0].write_bytes(stored[0].read_bytes()[:1000])
  with caplog.at_level("WARNING"):
    again = load_source(data, "test", seed=0).arrays
  assert "does not read" in caplog.text and "decoding 'test' again" in caplog.text
  datasets._load_tfds_cached.cache_clear()
  caplog.clear()

  def no_decoding(*_):
    raise AssertionError("decoded although the stored arrays were there")

  monkeypatch.setattr(datasets, "_stack_records", no_decoding)
  with caplog.at_level("WARNING"):
    read = load_source(data, "test", seed=0).arrays
  assert caplog.text == ""  # the replaced file reads back
  for arrays in (again, read):
    assert arrays.keys() == first.keys()
    assert all(np.array_equal(arrays[key], first[key]) for key in first)
  datasets._load_tfds_cached.cache_clear()
