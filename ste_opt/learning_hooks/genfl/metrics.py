"""Generator quality: a referee classifier, Fréchet distance on its features, memorisation.

- **Referee**: a :class:`~.fl.SmallCNN` (width 32: conv32-conv64-fc64-fc) trained centrally on
  real images (the run uses the clients' split; the referee only measures, it takes no part in
  FL). Its accuracy on generated images, with the conditioning label as ground truth, is the
  *label fidelity*.
- **FD**: Fréchet distance between Gaussian fits of the referee's 64-d penultimate features,
  ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``. Always reported next to the real-vs-real
  *floor* at comparable sample sizes (FD is biased upward at small n).
- **Memorisation**: L2 distance (pixel space, [-1, 1]) from each generated image to its nearest
  generator-training image; compared with the same distance for held-out real test images.
  A *near copy* is a sample closer than ``0.25 x`` the test median.
"""
from __future__ import annotations

import numpy as np
import torch

from .fl import SmallCNN, evaluate, local_train, make_classifier

__all__ = ["train_referee", "referee_features", "frechet_distance", "nearest_neighbour_distances",
           "memorisation_report", "generator_quality"]


def train_referee(images: np.ndarray, labels: np.ndarray, num_classes: int, *, epochs: int = 30,
                  seed: int = 0, width: int = 32) -> SmallCNN:
    """Train the referee CNN centrally (SGD, lr 0.02, momentum 0.9, batch 64)."""
    model = make_classifier(np.asarray(images).shape[1:], num_classes, width, seed)
    local_train(model, images, labels, epochs=epochs, lr=0.02, momentum=0.9, batch_size=64,
                seed=seed)
    model.eval()
    return model


@torch.no_grad()
def referee_features(model: SmallCNN, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Penultimate (64-d) features, float64 ``(n, 64)``."""
    model.eval()
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))
    out = [model.features(x[lo:lo + batch_size]) for lo in range(0, x.shape[0], batch_size)]
    return torch.cat(out).double().numpy()


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of two feature sets ``(n, d)``."""
    from scipy import linalg

    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eps = 1e-6 * np.eye(cov_a.shape[0])
    covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = np.real(covmean)
    fd = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2.0 * covmean))
    return max(fd, 0.0)


def nearest_neighbour_distances(samples: np.ndarray, reference: np.ndarray,
                                batch_size: int = 2000) -> np.ndarray:
    """L2 distance from each sample to its nearest reference image (flattened pixels)."""
    s = torch.from_numpy(np.asarray(samples, dtype=np.float32).reshape(len(samples), -1))
    r = torch.from_numpy(np.asarray(reference, dtype=np.float32).reshape(len(reference), -1))
    out = [torch.cdist(s[lo:lo + batch_size], r).min(1).values for lo in range(0, s.shape[0], batch_size)]
    return torch.cat(out).numpy() if out else np.empty(0)


def memorisation_report(samples: np.ndarray, generator_train: np.ndarray,
                        test_images: np.ndarray, near_copy_factor: float = 0.25) -> dict:
    """Median NN distance of samples vs of real test images to the generator's training set."""
    d_syn = nearest_neighbour_distances(samples, generator_train)
    d_test = nearest_neighbour_distances(test_images, generator_train)
    ref = float(np.median(d_test))
    return {"nn_median_synthetic": float(np.median(d_syn)), "nn_median_test": ref,
            "nn_ratio": float(np.median(d_syn) / ref) if ref > 0 else float("nan"),
            "near_copy_fraction": float(np.mean(d_syn < near_copy_factor * ref))}


def generator_quality(samples: np.ndarray, sample_labels: np.ndarray, *, referee: SmallCNN,
                      generator_train: np.ndarray, real_reference: np.ndarray,
                      test_images: np.ndarray, test_labels: np.ndarray) -> dict:
    """Referee accuracy on samples, FD vs test (and the real-vs-real floor), memorisation."""
    acc, _ = evaluate(referee, samples, sample_labels)
    test_acc, _ = evaluate(referee, test_images, test_labels)
    f_test = referee_features(referee, test_images)
    out = {"referee_test_accuracy": test_acc, "referee_accuracy_on_samples": acc,
           "fd": frechet_distance(referee_features(referee, samples), f_test),
           "fd_floor_real": frechet_distance(referee_features(referee, real_reference), f_test),
           "fd_samples": int(len(samples)), "fd_floor_samples": int(len(real_reference))}
    out.update(memorisation_report(samples, generator_train, test_images))
    return out
