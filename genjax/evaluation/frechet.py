"""The Frechet distance between Gaussians, the quantity FID reports (Heusel et al. 2017).

  d^2(N(mu1, S1), N(mu2, S2)) = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^{1/2} S2 S1^{1/2})^{1/2})

The last trace equals tr((S1 S2)^{1/2}) (same eigenvalues) but is computed from symmetric matrices
only: S1^{1/2} from the eigendecomposition of S1 (negative round-off eigenvalues clipped to 0), then
the eigenvalues of the symmetric PSD matrix S1^{1/2} S2 S1^{1/2}. Unlike scipy.linalg.sqrtm of the
non-symmetric S1 S2, this needs no "add eps to the diagonal" fallback for singular covariances
(fewer samples than feature dimensions) and returns no imaginary parts. Done once per evaluation on
[D, D] matrices in float64 on the host: the float32 streaming moments are exact to ~1e-6, but
float32 eigendecompositions of 2048 x 2048 matrices are not, and FID differences of 0.1 matter.
"""

from __future__ import annotations

import numpy as np


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
  eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
  return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray) -> float:
  """tr((S1 S2)^{1/2}) for symmetric PSD S1, S2 [D, D]."""
  root1 = _symmetric_sqrt(np.asarray(cov1, np.float64))
  inner = root1 @ np.asarray(cov2, np.float64) @ root1
  eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2.0)
  return float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))


def frechet_distance(
  mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray
) -> float:
  """Squared Frechet distance d^2 of N(mean1, cov1) and N(mean2, cov2); means [D], covs [D, D]."""
  mean1, mean2 = np.asarray(mean1, np.float64), np.asarray(mean2, np.float64)
  cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
  if mean1.shape != mean2.shape or cov1.shape != cov2.shape or cov1.shape != mean1.shape * 2:
    raise ValueError(
      f"Frechet distance needs means [D] and covariances [D, D] of one feature space; got means "
      f"{mean1.shape}, {mean2.shape} and covariances {cov1.shape}, {cov2.shape}."
    )
  squared_mean_distance = float(np.sum((mean1 - mean2) ** 2))
  value = (
    squared_mean_distance + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt_product(cov1, cov2)
  )
  return max(float(value), 0.0)
