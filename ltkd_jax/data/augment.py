"""Host-side (numpy) augmentation of uint8 NHWC batches (normalisation happens on the device)."""
from __future__ import annotations

import numpy as np


def pad_crop_flip(images: np.ndarray, pad: int, dy: np.ndarray, dx: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Zero-pad each image by ``pad``, crop back to (H, W) at offset (dy, dx), mirror where ``flip``.

    images: (B, H, W, C); dy, dx: (B,) ints in ``[0, 2 pad]``; flip: (B,) bool. Returns a new array.
    """
    b, h, w, _ = images.shape
    if pad:
        images = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows = np.asarray(dy)[:, None] + np.arange(h)[None, :]                  # (B, H)
    cols = np.where(np.asarray(flip)[:, None], np.arange(w - 1, -1, -1)[None, :], np.arange(w)[None, :])
    cols = np.asarray(dx)[:, None] + cols                                   # (B, W)
    return images[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]

