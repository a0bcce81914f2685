"""A tiny model and a small long-tailed synthetic data set for fast trainer tests (no tfds), and the environment
of a test's CPU subprocess (xla_env)."""
import os

import flax.linen as nn
import numpy as np

from ltkd_jax.data import device

COUNTS = np.array([48, 32, 24, 16, 12, 10, 8, 6, 5, 4])
GROUP_IDS = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])


class TinyNet(nn.Module):
    """conv-BN-ReLU, global pool, linear: BN makes the train/eval and global-batch statistics matter."""
    num_classes: int = 10
    width: int = 8

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(self.width, (3, 3), strides=2)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
        x = nn.relu(x).mean((1, 2))
        return nn.Dense(self.num_classes)(x)


def _images(rng, labels):
    noise = rng.integers(0, 128, (len(labels), 8, 8, 1))
    return (noise + labels[:, None, None, None] * 12).astype(np.uint8)


def make_data(seed=0, test_per_class=7):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), COUNTS).astype(np.int32)
    test_labels = np.repeat(np.arange(10), test_per_class).astype(np.int32)
    return device.DeviceData(
        name="synthetic", num_classes=10, train_images=_images(rng, labels), train_labels=labels,
        test_images=_images(rng, test_labels), test_labels=test_labels, group_ids=GROUP_IDS, train_counts=COUNTS,
        augmentation=device.Augmentation(pad=1, flip=True, mean=(0.5,), std=(0.25,)))


RECIPE = dict(batch_size=16, lr_decay_epochs=(2,), lr_decay_rate=0.1, momentum=0.9, weight_decay=5e-4,
              log_every_steps=4)


def largest_array_file(step_dir):
    """The largest array data file (an ocdbt `d/` file) of a checkpoint step: the one to damage in tests."""
    return max((p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"), key=lambda p: p.stat().st_size)


def xla_env(devices=None, *flags):
    """os.environ for a subprocess on the CPU: `devices` simulated devices (None: no forced count, as a launcher
    that sets its own wants) and extra XLA flags, after the session's own (tests/conftest.py)."""
    inherited = [f for f in os.environ.get("XLA_FLAGS", "").split()
                 if not f.startswith("--xla_force_host_platform_device_count")]
    count = [] if devices is None else [f"--xla_force_host_platform_device_count={devices}"]
    return dict(os.environ, XLA_FLAGS=" ".join(inherited + count + list(flags)), JAX_PLATFORMS="cpu")
