"""Remote workdirs: every output a run writes besides orbax's arrays goes through epath.

TensorFlow's in-memory file system (ram://) stands in for gs://, offline: epath is told to send
ram:// to TensorFlow's gfile, as it does for gs://. Orbax writes checkpoint arrays with
TensorStore, whose gs:// driver cannot be exercised offline; that part is not covered here.
"""

import io

import numpy as np
import pytest
import tensorflow as tf
from etils import epath
from etils.epath import gpath, register

from genjax.images import save_png
from genjax.paths import as_path
from genjax.trainer import write_eval_json, write_npz_stream
from genjax.writers import make_writer, read_metrics


@pytest.fixture
def ram_scheme(monkeypatch, tmp_path):
  """ram:// as an epath URI scheme backed by TensorFlow's gfile; the test runs in an empty
  local folder, which must stay empty."""
  monkeypatch.setattr(gpath, "_URI_PREFIXES", (*gpath._URI_PREFIXES, "ram://"))
  monkeypatch.setattr(gpath, "_URI_SCHEMES", gpath._URI_SCHEMES | {"ram"})
  monkeypatch.setitem(gpath._URI_MAP_ROOT, "ram://", "/ram/")
  monkeypatch.setitem(gpath._PREFIX_TO_BACKEND, "ram", gpath.backend_lib.tf_backend)
  monkeypatch.setitem(register._URI_PREFIXES_TO_CLS, "ram://", gpath.PosixGPath)
  monkeypatch.chdir(tmp_path)
  yield "ram://bucket/run"
  assert list(tmp_path.iterdir()) == []  # nothing landed on local disk


def test_a_uri_workdir_stays_a_uri():
  assert str(as_path("gs://bucket/run") / "checkpoints") == "gs://bucket/run/checkpoints"
  assert as_path("relative/run").is_absolute()


def test_metrics_events_eval_json_grids_and_samples_go_to_the_remote_workdir(ram_scheme):
  workdir = as_path(ram_scheme)
  writer = make_writer(workdir)
  writer.write_scalars(1, {"train/loss": 2.0})
  writer.write_scalars(2, {"train/loss": 1.5})
  writer.write_images(2, {"samples": np.zeros((1, 4, 4, 1), np.float32)})
  writer.flush()
  assert [row["train/loss"] for row in read_metrics(workdir)] == [2.0, 1.5]
  assert any(name.startswith("events.out.tfevents") for name in tf.io.gfile.listdir(ram_scheme))
  write_eval_json(workdir, 2, {"eval/loss": 1.0}, {"dataset": "mnist"})
  assert '"eval/loss": 1.0' in (workdir / "eval_2.json").read_text()
  picture = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
  save_png(workdir / "samples" / "grid.png", picture)
  with tf.io.gfile.GFile(f"{ram_scheme}/samples/grid.png", "rb") as file:
    np.testing.assert_array_equal(np.asarray(tf.io.decode_png(file.read())), picture)
  batches = [np.full((3, 2), 1.0, np.float32), np.full((2, 2), 2.0, np.float32)]
  write_npz_stream(workdir / "samples" / "s.npz", "samples", 5, iter(batches), step=7)
  saved = np.load(io.BytesIO((workdir / "samples" / "s.npz").read_bytes()))
  np.testing.assert_array_equal(saved["samples"], np.concatenate(batches))
  assert int(saved["step"]) == 7


def test_npz_stream_refuses_a_short_count(tmp_path):
  with pytest.raises(RuntimeError, match="wrote 3 of 5"):
    write_npz_stream(epath.Path(tmp_path / "s.npz"), "samples", 5, iter([np.zeros((3, 2))]))
