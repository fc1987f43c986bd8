"""data.name="image_folder": listing, labels, channels, crop and resize, bad files, lazy decoding,
and a tiny conditional DCGAN trained on a folder of PNG/JPEG files through the input pipeline."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import train_on_synthetic_data, unmoved_kernels
from etils import epath
from PIL import Image

from genjax.datasets import (
  DataError,
  dataset_info,
  decode_image,
  list_image_folder,
  load_source,
  open_image_folder,
)
from genjax.families import family_config
from genjax.input_pipeline import eval_batches


def _save(path: Path, pixels: np.ndarray, **options) -> np.ndarray:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path, **options)
  return pixels


def _noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _folder_data(folder: Path, image_size: int = 0, in_memory: bool = True):
  config = family_config("gan")
  config.data.name = "image_folder"
  config.data.folder = str(folder)
  config.data.image_size = image_size
  config.data.in_memory = in_memory
  return config.data


@pytest.fixture
def class_folder(tmp_path) -> Path:
  """dogs/ and cats/ subfolders (made in unsorted order), PNG and JPEG, any-case extensions, one
  nested file, and a text file that no listing picks up."""
  root = tmp_path / "pets"
  _save(root / "dogs" / "b.png", _noise(0, (20, 24, 3)))
  _save(root / "dogs" / "a.JPEG", _noise(1, (20, 24, 3)))
  _save(root / "cats" / "z.jpg", _noise(2, (20, 24, 3)))
  _save(root / "cats" / "deeper" / "y.PNG", _noise(3, (20, 24, 3)))
  (root / "cats" / "notes.txt").write_text("not an image")
  return root


def test_classes_order_shapes_and_labels(class_folder):
  listing = list_image_folder(class_folder)
  assert listing.class_names == ("cats", "dogs")  # sorted names -> 0, 1 (torchvision's ImageFolder)
  assert listing.files == ("cats/deeper/y.PNG", "cats/z.jpg", "dogs/a.JPEG", "dogs/b.png")
  np.testing.assert_array_equal(listing.labels, [0, 0, 1, 1])
  source = load_source(_folder_data(class_folder, image_size=16), "train", seed=0)
  assert source.info.shape == (16, 16, 3) and source.info.num_classes == 2 and source.info.is_image
  assert source.arrays["x"].dtype == np.uint8 and source.arrays["x"].shape == (4, 16, 16, 3)
  assert source.arrays["label"].dtype == np.int32
  np.testing.assert_array_equal(source.arrays["label"], [0, 0, 1, 1])
  # Every split names the same images (FID against the training set).
  assert load_source(_folder_data(class_folder, image_size=16), "test", seed=1) is source
  assert dataset_info(_folder_data(class_folder, image_size=16)) == source.info
  again = open_image_folder(class_folder, 16).decode_all(num_threads=2)
  np.testing.assert_array_equal(again.arrays["x"], source.arrays["x"])  # deterministic order


def test_lazy_source_decodes_the_same_examples(class_folder):
  eager = open_image_folder(class_folder, 16).decode_all(num_threads=2)
  lazy = load_source(_folder_data(class_folder, image_size=16, in_memory=False), "train", seed=0)
  assert type(lazy).__name__ == "ImageFolderSource" and len(lazy) == 4
  indices = np.array([3, 0, 2])
  batch = lazy.gather(indices)
  np.testing.assert_array_equal(batch["x"], eager.arrays["x"][indices])
  np.testing.assert_array_equal(batch["label"], eager.arrays["label"][indices])


def test_flat_folder_is_unlabelled_at_its_native_size(tmp_path):
  first = _save(tmp_path / "img_1.png", _noise(0, (12, 10, 3)))
  _save(tmp_path / "img_0.png", _noise(1, (12, 10, 3)))
  _save(tmp_path / "sub" / "img_2.png", _noise(2, (12, 10, 3)))  # a top-level image: no classes
  source = load_source(_folder_data(tmp_path), "train", seed=0)
  assert source.info.num_classes == 0 and "label" not in source.arrays
  assert source.arrays["x"].shape == (3, 12, 10, 3)
  np.testing.assert_array_equal(source.arrays["x"][1], first)  # img_0, img_1, sub/img_2
  assert dataset_info(_folder_data(tmp_path)) == source.info


def test_channels_follow_the_images(tmp_path):
  gray = _save(tmp_path / "gray" / "a.png", _noise(0, (8, 8)))
  _save(tmp_path / "gray" / "b.jpg", _noise(1, (8, 8)))
  _save(tmp_path / "gray" / "c.png", (_noise(2, (8, 8)).astype(np.uint16) << 8) | 0xAB)  # I;16
  source = open_image_folder(tmp_path / "gray", 0).decode_all(num_threads=2)
  assert source.info.shape == (8, 8, 1)
  assert dataset_info(_folder_data(tmp_path / "gray")) == source.info
  np.testing.assert_array_equal(source.arrays["x"][0, ..., 0], gray)
  np.testing.assert_array_equal(source.arrays["x"][2, ..., 0], _noise(2, (8, 8)))  # the high byte

  _save(tmp_path / "mixed" / "a.png", gray)  # the first image is grayscale, a later one is not
  _save(tmp_path / "mixed" / "b.png", _noise(3, (8, 8, 4)))  # RGBA: alpha dropped
  mixed = open_image_folder(tmp_path / "mixed", 0).decode_all(num_threads=2)
  assert mixed.info.shape == (8, 8, 3)
  assert dataset_info(_folder_data(tmp_path / "mixed")) == mixed.info
  np.testing.assert_array_equal(mixed.arrays["x"][0], np.repeat(gray[..., None], 3, axis=-1))
  np.testing.assert_array_equal(mixed.arrays["x"][1], _noise(3, (8, 8, 4))[..., :3])


def test_crop_and_resize(tmp_path):
  # 2x2 blocks whose mean is an integer (offsets -2, +2, +1, -1 around it), framed by 8 columns of
  # 255 on each side: the centre 64x64 crop box-downscaled to 32 is exactly the block means.
  means = np.random.default_rng(0).integers(2, 254, (32, 32, 3)).astype(np.uint8)
  offsets = np.tile(np.array([[-2, 2], [1, -1]]), (32, 32))[..., None]
  pattern = (np.repeat(np.repeat(means, 2, 0), 2, 1).astype(int) + offsets).astype(np.uint8)
  framed = np.pad(pattern, ((0, 0), (8, 8), (0, 0)), constant_values=255)
  path = epath.Path(tmp_path / "pattern.png")
  _save(path, framed)
  np.testing.assert_array_equal(decode_image(path, 3, 32), means)  # BOX: integer factor
  np.testing.assert_array_equal(decode_image(path, 3, 64), pattern)  # crop only
  expected = np.asarray(Image.fromarray(pattern).resize((48, 48), Image.Resampling.LANCZOS))
  np.testing.assert_array_equal(decode_image(path, 3, 48), expected)  # LANCZOS otherwise
  assert decode_image(path, 3, 100).shape == (100, 100, 3)  # upsampling, LANCZOS
  exif = Image.Exif()
  exif[0x0112] = 6  # EXIF orientation "rotate 90 degrees clockwise to display"
  _save(tmp_path / "phone" / "a.jpg", _noise(0, (20, 40, 3)), exif=exif.tobytes())
  _save(tmp_path / "phone" / "b.jpg", _noise(1, (40, 20, 3)))
  phone = open_image_folder(tmp_path / "phone", 0)  # both 40x20 once upright
  assert phone.info.shape == (40, 20, 3) and phone.gather(np.arange(2))["x"].shape == (2, 40, 20, 3)


def test_unreadable_files_are_skipped_with_warnings(tmp_path, caplog):
  _save(tmp_path / "a.png", _noise(0, (16, 16, 3)))
  buffer = io.BytesIO()
  Image.fromarray(_noise(1, (64, 64, 3))).save(buffer, "PNG")
  (tmp_path / "b_truncated.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
  (tmp_path / "c.png").write_text("a text file named like an image")
  _save(tmp_path / "d.jpg", _noise(2, (16, 16, 3)))
  caplog.set_level(logging.WARNING)
  lazy = open_image_folder(tmp_path, 16)  # headers only: the text file is left out
  assert lazy.files == ("a.png", "b_truncated.png", "d.jpg") and lazy.skipped == ("c.png",)
  with pytest.raises(DataError, match="b_truncated.png.*data.in_memory=True"):
    lazy.gather(np.array([0, 1]))
  source = lazy.decode_all(num_threads=2)  # decoding drops the truncated file too
  assert source.arrays["x"].shape == (2, 16, 16, 3)
  np.testing.assert_array_equal(source.arrays["x"][0], _noise(0, (16, 16, 3)))
  jpeg = decode_image(epath.Path(tmp_path / "d.jpg"), 3, 16)  # lossy: compared with its decoding
  np.testing.assert_array_equal(source.arrays["x"][1], jpeg)
  warned = " ".join(record.getMessage() for record in caplog.records)
  assert "c.png: not a readable image" in warned and "b_truncated.png: it does not decode" in warned


def test_errors_name_the_folder_and_the_fix(tmp_path):
  with pytest.raises(DataError, match="data.folder is not set"):
    list_image_folder("")
  with pytest.raises(DataError, match="missing.*does not exist.*PNG/JPEG"):
    list_image_folder(tmp_path / "missing")
  (tmp_path / "readme.txt").write_text("no images here")
  with pytest.raises(DataError, match="holds no image files"):
    list_image_folder(tmp_path)
  (tmp_path / "x.png").write_text("not a png")
  with pytest.raises(DataError, match="None of the 1 image files.*'x.png'"):
    open_image_folder(tmp_path, 0)
  with pytest.raises(DataError, match="None of the 1 image files"):
    dataset_info(_folder_data(tmp_path))
  _save(tmp_path / "a.png", _noise(0, (8, 8, 3)))
  _save(tmp_path / "b.png", _noise(1, (8, 6, 3)))
  with pytest.raises(DataError, match=r"'a.png' is 8x8 .* 'b.png' is 8x6.*data.image_size"):
    open_image_folder(tmp_path, 0)
  assert open_image_folder(tmp_path, 4).info.shape == (4, 4, 3)


@pytest.mark.slow
def test_tiny_conditional_dcgan_trains_on_a_lazy_folder(tmp_path):
  """Compiled train steps over TrainData of the folder (labels reach the conditional GAN), and the
  eval batches of the same images."""
  for index in range(16):
    kind, suffix = ("circles", ".png") if index % 2 else ("squares", ".jpg")
    _save(tmp_path / "data" / kind / f"{index:02d}{suffix}", _noise(index, (20, 24, 3)))
  config = family_config("gan")
  config.data.update(
    name="image_folder",
    folder=str(tmp_path / "data"),
    image_size=16,
    in_memory=False,
    value_range=(-1.0, 1.0),
  )
  config.model.update(network="dcgan", conditional=True, g_features=(16, 8), d_features=(8, 16))
  config.training.batch_size = 8  # g_features of length 2: 4x4 -> 16x16, H and W divisible by 4
  config.lock()
  experiment, before, state, metrics = train_on_synthetic_data(config, tmp_path / "run", steps=2)
  experiment.checkpointer.close()
  assert int(state.step) == 2 and all(np.isfinite(value) for value in metrics.values())
  assert not unmoved_kernels(before, jax.device_get(state.params))
  batches = list(eval_batches(config.data, 8, num_examples=12, data_seed=0, noise_seed=0))
  assert [b["x"].shape for b in batches] == [(8, 16, 16, 3)] * 2
  np.testing.assert_array_equal(batches[1]["mask"], [1] * 4 + [0] * 4)
  np.testing.assert_array_equal(batches[0]["label"], [0] * 8)  # circles: the first 8 files
  assert -1.0 <= min(b["x"].min() for b in batches) and max(b["x"].max() for b in batches) <= 1.0
