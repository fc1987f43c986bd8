"""genjax.writers.WandbWriter: Weights & Biases logging in offline mode (no network), read back
from the run's own .wandb file and compared with metrics.jsonl."""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genjax.config import base_config
from genjax.writers import WANDB_RUN_ID_FILE, make_writer, read_metrics

BLOCK = 32 * 1024  # the .wandb file is a LevelDB-style log of 32 KiB blocks


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
  """wandb in offline mode with every folder it writes under tmp_path; its service stops after."""
  wandb = pytest.importorskip("wandb")
  home = tmp_path / "wandb_home"
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
    monkeypatch.setenv(name, str(home))
  yield wandb
  wandb.teardown()


def offline_config():
  config = base_config()
  config.logging.wandb, config.logging.wandb_mode = True, "offline"
  config.logging.wandb_project = "genjax-test"
  return config


def wandb_records(run_file: Path) -> list:
  """The protobuf Records of an offline run file: a 7-byte header (":W&B", magic 0xBEE1 little
  endian, version 0), then chunks [crc32 (4 bytes), length (2, little endian), type (1), data]
  that never cross a 32 KiB block (a block's last < 7 bytes are padding); type 1 is a whole
  record, 2/3/4 its first/middle/last part."""
  from wandb.proto import wandb_internal_pb2

  data = run_file.read_bytes()
  assert data[:7] == b":W&B\xe1\xbe\x00", data[:7]
  records, position, pending = [], 7, b""
  while position + 7 <= len(data):
    if BLOCK - position % BLOCK < 7:
      position += BLOCK - position % BLOCK
      continue
    length, kind = struct.unpack("<HB", data[position + 4 : position + 7])
    pending += data[position + 7 : position + 7 + length]
    position += 7 + length
    if kind in (1, 4):
      records.append(wandb_internal_pb2.Record.FromString(pending))
      pending = b""
  return records


def history_rows(records) -> dict[int, dict]:
  """{step: {key: value}} of the history records (nested keys joined by ".")."""
  rows = {}
  for record in records:
    if record.WhichOneof("record_type") == "history":
      row = {
        ".".join(item.nested_key) or item.key: json.loads(item.value_json)
        for item in record.history.item
      }
      rows.setdefault(row["_step"], {}).update(row)
  return rows


def run_files(workdir: Path, run_id: str) -> list[Path]:
  """The run file of each offline-run folder of run_id: a resumed run writes its own folder, named
  offline-run-<second>-<id>, with "-1", "-2"... added when it starts in the same second."""
  return sorted((workdir / "wandb").glob(f"offline-run-*-{run_id}*/run-{run_id}.wandb"))


def test_wandb_logs_the_scalars_of_metrics_jsonl_and_a_resumed_run_continues_it(
  tmp_path, wandb_offline
):
  workdir, config = tmp_path / "run", offline_config()
  writer = make_writer(workdir, config)
  writer.write_hparams({"optim.lr": 1e-3, "note": "first"})
  for step in (1, 2, 3):
    writer.write_scalars(step, {"train/loss": 1.0 / step, "train/bpd": np.float32(7.25 - step)})
  writer.write_scalars(3, {"eval/loss": np.asarray(0.125)})
  samples = np.linspace(0.0, 1.0, 2 * 4 * 5).reshape(2, 4, 5, 1)  # [N, H, W, C] in [0, 1]
  writer.write_images(3, {"samples": samples})
  writer.close()
  wandb_offline.teardown()  # run.finish() can return before the offline run file is written

  run_id = (workdir / WANDB_RUN_ID_FILE).read_text().strip()
  (run_file,) = run_files(workdir, run_id)
  records = wandb_records(run_file)
  rows = history_rows(records)
  for record in read_metrics(workdir):
    logged = rows[record["step"]]
    assert {k: logged[k] for k in record if k != "step"} == {
      k: record[k] for k in record if k != "step"
    }
  assert sorted(rows) == [1, 2, 3]
  assert rows[3]["samples._type"] == "images/separated" and rows[3]["samples.count"] == 2
  for image, name in zip(samples, rows[3]["samples.filenames"]):
    with Image.open(run_file.parent / "files" / name) as logged:
      np.testing.assert_array_equal(np.asarray(logged), np.round(image[..., 0] * 255))
  (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
  assert run.run_id == run_id and run.project == "genjax-test" and run.display_name == "run"
  config_items = {item.key: json.loads(item.value_json) for item in run.config.update}
  assert config_items["optim"]["lr"] == config.optim.lr and config_items["logging"]["wandb"]
  updates = [
    item.key for r in records if r.WhichOneof("record_type") == "config" for item in r.config.update
  ]
  assert "note" in updates and "optim.lr" not in updates  # config keys are already the config

  resumed = make_writer(workdir, config)  # a later invocation (resumed training, eval)
  resumed.write_scalars(4, {"train/loss": 0.2})
  resumed.close()
  wandb_offline.teardown()
  assert (workdir / WANDB_RUN_ID_FILE).read_text().strip() == run_id
  resumed_rows = {}
  for path in run_files(workdir, run_id):  # its own offline-run folder, of the same run id
    resumed_rows.update(history_rows(wandb_records(path)))
  assert resumed_rows[4]["train/loss"] == 0.2


def test_without_wandb_installed_the_error_says_how_to_install_it(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
  config = base_config()
  make_writer(tmp_path / "plain", config).close()  # logging.wandb=False never imports wandb
  config.logging.wandb = True
  with pytest.raises(ImportError, match=r"pip install 'genjax-generative\[wandb\]'"):
    make_writer(tmp_path / "wandb", config)
