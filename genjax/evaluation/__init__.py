"""One evaluation suite for every family: FID, KID, IS, precision/recall, density/coverage, mode
coverage, likelihoods.

frechet.py          Frechet distance of feature Gaussians (FID)
kid.py              Kernel Inception Distance, unbiased, with its standard error
inception_score.py  Inception Score with splits, streamed
prdc.py             precision/recall (Kynkaanniemi et al.) and density/coverage (Naeem et al.)
mode_coverage.py    high-quality fraction and covered modes of samples of a Gaussian mixture
statistics.py       streaming mean/covariance (Chan et al.'s pairwise update)
extractors.py       the feature-extractor interface and registry ("mnist", "inception", "raw")
inception.py        FIDInceptionV3 in Flax (the TF FID graph) and its input protocols
inception_weights.py  its weights file: from fid-helper's TorchScript or pytorch-fid, hash-pinned
torch_archive.py    reads torch.save / TorchScript files without torch
paper_protocols.py  when an Inception number is comparable with papers (CIFAR-10: 50k vs train)
mnist_classifier.py the MNIST CNN; its trained weights are committed in weights/
streaming.py        images -> features -> summaries, batch by batch
reference.py        reference statistics cached with the hash of their protocol
sample_metrics.py   the sample-metric registry; what `--mode=eval` computes from
                    eval.sample_metrics, and its protocol
likelihood.py       the eval-data statement the families' likelihood conventions share
benchmark.py        feature-extraction throughput
"""

from genjax.evaluation.benchmark import benchmark_extractors
from genjax.evaluation.extractors import EXTRACTORS, FeatureExtractor, InputError
from genjax.evaluation.frechet import frechet_distance
from genjax.evaluation.inception_score import inception_score
from genjax.evaluation.kid import kernel_inception_distance
from genjax.evaluation.mode_coverage import mode_statistics
from genjax.evaluation.params_io import WeightsError
from genjax.evaluation.prdc import precision_recall_density_coverage
from genjax.evaluation.reference import ReferenceMismatchError
from genjax.evaluation.statistics import Moments

__all__ = [
  "EXTRACTORS",
  "FeatureExtractor",
  "InputError",
  "Moments",
  "ReferenceMismatchError",
  "WeightsError",
  "benchmark_extractors",
  "frechet_distance",
  "inception_score",
  "kernel_inception_distance",
  "mode_statistics",
  "precision_recall_density_coverage",
]
