"""Metric plots: series read from metrics.jsonl, one PNG per figure, clear error for a missing metric."""

import json

import numpy as np
import pytest
from PIL import Image

from genjax.plots import metric_curves, metric_series


def _write_run(workdir, records):
  workdir.mkdir(parents=True)
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_series_and_curves_of_two_runs(tmp_path):
  # A resumed run logs step 200 twice: the later value wins.
  _write_run(tmp_path / "a", [{"step": 100, "train/d_real_sign": 0.2}, {"step": 200, "train/d_real_sign": 0.5},
                              {"step": 200, "train/d_real_sign": 0.7}, {"step": 200, "eval/fid": 3.0}])
  _write_run(tmp_path / "b", [{"step": 100, "train/d_real_sign": 0.9}])
  assert metric_series(tmp_path / "a", "train/d_real_sign") == ([100, 200], [0.2, 0.7])
  path = metric_curves({"a": tmp_path / "a", "b": tmp_path / "b"}, ["train/d_real_sign"],
                       tmp_path / "out" / "rt.png", {"train/d_real_sign": 0.6})
  image = np.asarray(Image.open(path).convert("L"))
  assert image.shape[0] > 200 and image.std() > 10  # a drawn figure, not a blank canvas
  with pytest.raises(ValueError, match="No run logged 'train/ada_p'.*eval/fid, train/d_real_sign"):
    metric_curves({"a": tmp_path / "a"}, ["train/ada_p"], tmp_path / "x.png")
