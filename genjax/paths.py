"""Every file a run writes goes through one path type: etils' `epath.Path`.

A workdir may be a local folder or a URI such as `gs://bucket/run`; epath sends the latter to
TensorFlow's or fsspec's file systems, and orbax and tfds take the same type. `pathlib.Path` would
turn `gs://b/x` into the local folder `./gs:/b/x`.
"""

from __future__ import annotations

import os

from etils import epath


def as_path(path: epath.PathLike) -> epath.Path:
  """`path` as an epath: URIs (`gs://...`) as they are, local paths made absolute."""
  text = os.fspath(path)
  return epath.Path(text if "://" in text else os.path.abspath(text))
