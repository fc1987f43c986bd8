"""When an Inception-metric result may be put next to the numbers in papers.

PAPER_PROTOCOLS maps a dataset to the protocol its published Inception FID/KID/IS tables use. A
result is labelled "comparable with papers" only when every requirement holds: the dataset has a
protocol, at least its number of samples, the reference split's statistics over exactly its
number of examples, the TF FID input handling, and real (not random) weights at the dataset's
native size. Otherwise the metric is still computed, and labelled "not comparable with papers"
with the reasons. The label goes into every evaluation protocol (and the log).

  cifar10  "50k samples vs train statistics": 50,000 samples against the statistics of all 50,000
           training images, TF FID (TTUR) input handling; the protocol of the GAN tables since
           Heusel et al. 2017 / Miyato et al. 2018 and of DDPM (Ho et al. 2020) and StyleGAN2-ADA.

MNIST has no entry: Inception features of grey 28 x 28 digits resized to 299 x 299 are far from
the ImageNet images the network was trained on, so Inception FIDs on MNIST are not comparable with
any published CIFAR-10 number (nor is there an MNIST Inception-FID protocol in the literature).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from genjax.registry import Registry


@dataclasses.dataclass(frozen=True)
class PaperProtocol:
  """What a published Inception-metric table of one dataset used."""

  description: str
  num_samples: int
  reference_split: str
  reference_examples: int  # the statistics cover exactly this many examples (the whole split)
  image_size: int  # native size of the dataset's images
  input_protocol: str = "tf_fid"


PAPER_PROTOCOLS: Registry[PaperProtocol] = Registry("paper protocol")
PAPER_PROTOCOLS.register("cifar10")(
  PaperProtocol(
    description="50k samples vs train statistics",
    num_samples=50_000,
    reference_split="train",
    reference_examples=50_000,
    image_size=32,
  )
)


def paper_comparison(
  data: ml_collections.ConfigDict,
  eval_config: ml_collections.ConfigDict,
  weights_sha256: str,
  reference_count: int | None,
) -> dict[str, Any]:
  """{"label", "comparable_with_papers", "paper_protocol", "not_comparable_because": [...]} for
  Inception metrics of samples imitating data.name, drawn and compared as eval_config says, with
  weights of that SHA-256 against reference statistics of reference_count examples (None: no
  reference is used, as for the Inception Score alone)."""
  if data.name not in PAPER_PROTOCOLS:
    known = ", ".join(PAPER_PROTOCOLS.names())
    reason = (
      f"genjax knows no published Inception-metric protocol for {data.name!r} (PAPER_PROTOCOLS "
      f"has {known}); such numbers compare runs with each other only"
    )
    return _record(None, [reason])
  protocol = PAPER_PROTOCOLS.get(data.name)
  reasons = []
  if eval_config.num_samples < protocol.num_samples:
    reasons.append(f"{eval_config.num_samples} samples, the protocol needs {protocol.num_samples}")
  if reference_count is not None and eval_config.reference_split != protocol.reference_split:
    reasons.append(
      f"reference split {eval_config.reference_split!r}, the protocol uses "
      f"{protocol.reference_split!r}"
    )
  if reference_count is not None and reference_count != protocol.reference_examples:
    reasons.append(
      f"reference statistics of {reference_count} examples, the protocol uses "
      f"{protocol.reference_examples}"
    )
  if eval_config.inception_protocol != protocol.input_protocol:
    reasons.append(
      f"input handling {eval_config.inception_protocol!r}, the protocol uses "
      f"{protocol.input_protocol!r}"
    )
  if weights_sha256.startswith("random"):
    reasons.append("random Inception weights")
  if data.image_size not in (0, protocol.image_size):
    reasons.append(f"images at {data.image_size} pixels, not the native {protocol.image_size}")
  return _record(protocol, reasons)


def _record(protocol: PaperProtocol | None, reasons: list[str]) -> dict[str, Any]:
  description = protocol.description if protocol else None
  if reasons:
    label = "not comparable with papers: " + "; ".join(reasons)
  else:
    label = f"comparable with papers ({description})"
  return {
    "label": label,
    "comparable_with_papers": not reasons,
    "paper_protocol": description,
    "not_comparable_because": reasons,
  }


def use_paper_protocol(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Sets config.eval to the published protocol of config.data.name: Inception FID and KID of
  its number of samples against its reference split's statistics, TF FID input handling."""
  protocol = PAPER_PROTOCOLS.get(config.data.name)
  ev = config.eval
  ev.sample_metrics = ("inception_fid", "inception_kid")
  ev.num_samples = protocol.num_samples
  ev.reference_split = protocol.reference_split
  ev.reference_num_examples = 0  # the whole split
  ev.inception_protocol = protocol.input_protocol
  return config
