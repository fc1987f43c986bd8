"""Reads PyTorch files without torch: `torch.save` state dicts and TorchScript archives.

Both are pickles whose tensors point at raw storages by a "persistent id"
  ("storage", <StorageType>, <key>, <device>, <numel>),
and whose tensors are rebuilt by `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
- Zip format (torch >= 1.6 `torch.save`, and every TorchScript `torch.jit.save`): a zip holding
  `<archive>/data.pkl` and one little-endian file `<archive>/data/<key>` per storage.
- Legacy format (`_use_new_zipfile_serialization=False`): five pickles in a row (magic number,
  protocol version, system info, the object, the list of storage keys), then per key an int64
  element count and the raw bytes.
A TorchScript archive pickles its module tree as objects of `__torch__.*` classes; they come back as
`ScriptObject`s whose `state` holds the attributes (parameters as numpy arrays, submodules as
ScriptObjects, ints and lists as they are). Only the classes listed here are accepted, so a
file cannot run code while it is read.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

STORAGE_DTYPES = {
  "FloatStorage": np.float32,
  "DoubleStorage": np.float64,
  "HalfStorage": np.float16,
  "BFloat16Storage": None,  # no numpy dtype: reported as unsupported
  "LongStorage": np.int64,
  "IntStorage": np.int32,
  "ShortStorage": np.int16,
  "CharStorage": np.int8,
  "ByteStorage": np.uint8,
  "BoolStorage": np.bool_,
}
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C


class TorchArchiveError(ValueError):
  """The file is not a readable PyTorch file (truncated, corrupted, or of an unsupported kind)."""


class ScriptObject:
  """An object of a TorchScript class (`__torch__.<module>.<name>`); attributes in `state`."""

  qualified_name = ""
  state: Any = None

  def __setstate__(self, state: Any) -> None:
    self.state = state

  def children(self) -> dict[str, ScriptObject]:
    return {k: v for k, v in self.state.items() if isinstance(v, ScriptObject)}

  def arrays(self) -> dict[str, np.ndarray]:
    return {k: v for k, v in self.state.items() if isinstance(v, np.ndarray)}


class _StorageRef:
  def __init__(self, type_name: str, key: str):
    dtype = STORAGE_DTYPES.get(type_name)
    if dtype is None:
      raise TorchArchiveError(f"Tensors stored as {type_name} are not supported.")
    self.dtype = np.dtype(dtype)
    self.key = key


def _tensor_from(data: np.ndarray, offset: int, size, stride) -> np.ndarray:
  size, stride = tuple(size), tuple(stride)
  if not size:
    return data[offset : offset + 1].reshape(()).copy()
  last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
  if any(n == 0 for n in size):
    return np.zeros(size, data.dtype)
  if last >= data.size:
    raise TorchArchiveError("A tensor reaches past the end of its storage: the file is corrupted.")
  view = np.lib.stride_tricks.as_strided(
    data[offset:], size, tuple(s * data.itemsize for s in stride), writeable=False
  )
  return np.ascontiguousarray(view)


class _Unpickler(pickle.Unpickler):
  """Accepts only tensor rebuilding, containers and `__torch__` classes."""

  def __init__(self, handle, read_storage):
    super().__init__(handle)
    self._read_storage = read_storage
    self._storages: dict[str, np.ndarray] = {}

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise TorchArchiveError(f"Unknown persistent id {pid!r}.")
    type_name = getattr(pid[1], "__name__", pid[1])
    return _StorageRef(type_name, str(pid[2]))

  def _rebuild_tensor(self, storage: _StorageRef, offset, size, stride, *unused):
    if storage.key not in self._storages:
      self._storages[storage.key] = self._read_storage(storage)
    return _tensor_from(self._storages[storage.key], offset, size, stride)

  def find_class(self, module: str, name: str):
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
      return self._rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return lambda tensor, *unused: tensor
    if module == "torch" and name in STORAGE_DTYPES:
      return name
    if module == "torch.jit._pickle" and name.startswith("build_"):
      return lambda value: value
    if module == "collections" and name == "OrderedDict":
      return collections.OrderedDict
    if module.startswith("__torch__"):
      return type(name, (ScriptObject,), {"qualified_name": f"{module}.{name}"})
    raise TorchArchiveError(f"The file needs {module}.{name}, which this reader does not allow.")


def _load_zip(path: Path) -> Any:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
      raise TorchArchiveError("The zip holds no '<archive>/data.pkl': not a PyTorch file.")
    prefix = pickles[0].split("/")[0]

    def read_storage(storage: _StorageRef) -> np.ndarray:
      raw = archive.read(f"{prefix}/data/{storage.key}")
      if len(raw) % storage.dtype.itemsize:
        raise TorchArchiveError(f"Storage {storage.key} has a partial element: corrupted file.")
      return np.frombuffer(raw, storage.dtype.newbyteorder("<"))

    with archive.open(pickles[0]) as handle:
      return _Unpickler(io.BytesIO(handle.read()), read_storage).load()


def _load_legacy(path: Path) -> Any:
  with open(path, "rb") as handle:
    if pickle.load(handle) != LEGACY_MAGIC_NUMBER:
      raise TorchArchiveError("Not a PyTorch file (wrong magic number).")
    pickle.load(handle)  # protocol version
    pickle.load(handle)  # system info (endianness, type sizes)
    dtypes: dict[str, np.dtype] = {}
    result = _LegacyUnpickler(handle, dtypes).load()
    storages: dict[str, np.ndarray] = {}
    for key in pickle.load(handle):
      (count,) = struct.unpack("<q", handle.read(8))
      dtype = dtypes.get(key, np.dtype(np.uint8))
      raw = handle.read(count * dtype.itemsize)
      if len(raw) != count * dtype.itemsize:
        raise TorchArchiveError("The file ends inside a tensor: it is truncated.")
      storages[key] = np.frombuffer(raw, dtype.newbyteorder("<"))
  return _resolve(result, storages)


class _Placeholder:
  """A tensor of a legacy file, whose storage bytes come after the pickle."""

  def __init__(self, key: str, offset: int, size, stride):
    self.key, self.offset, self.size, self.stride = key, offset, size, stride


class _LegacyUnpickler(_Unpickler):
  def __init__(self, handle, dtypes: dict[str, np.dtype]):
    super().__init__(handle, read_storage=None)
    self._dtypes = dtypes

  def _rebuild_tensor(self, storage: _StorageRef, offset, size, stride, *unused):
    self._dtypes[storage.key] = storage.dtype
    return _Placeholder(storage.key, offset, size, stride)


def _resolve(value: Any, storages: dict[str, np.ndarray]) -> Any:
  """`value` with every _Placeholder replaced by its tensor."""
  if isinstance(value, _Placeholder):
    return _tensor_from(storages[value.key], value.offset, value.size, value.stride)
  if isinstance(value, dict):
    return type(value)((k, _resolve(v, storages)) for k, v in value.items())
  if isinstance(value, (list, tuple)):
    return type(value)(_resolve(v, storages) for v in value)
  return value


def load_torch_file(path: str | Path) -> Any:
  """The object a `torch.save` or `torch.jit.save` file holds, tensors as numpy arrays.

  Raises TorchArchiveError for a missing, truncated or corrupted file.
  """
  path = Path(path)
  if not path.is_file():
    raise TorchArchiveError(f"{str(path)!r} does not exist.")
  try:
    if zipfile.is_zipfile(path):
      return _load_zip(path)
    return _load_legacy(path)
  except TorchArchiveError:
    raise
  except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, KeyError, struct.error) as error:
    raise TorchArchiveError(
      f"{str(path)!r} is not a complete PyTorch file ({type(error).__name__}: {error}); it is "
      "probably truncated or corrupted."
    ) from error
