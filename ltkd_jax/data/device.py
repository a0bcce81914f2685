"""Device-resident small data sets: uint8 images on the accelerator, batches drawn inside the jitted step.

Every batch is a pure function of `(arrays, key, step)`: resumed runs, `lax.scan` dispatches and any device count
see the same batches (docs/data.md, "Input paths"). The host pipeline (`ltkd_jax.data.host`) is for ImageNet."""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from ltkd_jax.data.info import Augmentation, ExperimentData  # noqa: F401  # Augmentation: this module's API too


def normalize(images: jax.Array, mean, std) -> jax.Array:
    """uint8 (or [0, 255] float) NHWC -> float32 normalised."""
    images = images.astype(jnp.float32) / 255.0
    return (images - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def normalize_batch(batch: dict, augmentation: Augmentation) -> dict:
    """`batch` with its uint8 'image' normalised by `augmentation`'s mean / std (float32); every other entry
    ('label', 'mask', ...) as it is."""
    return {**batch, "image": normalize(batch["image"], augmentation.mean, augmentation.std)}


def pad_crop_flip(images: jax.Array, key: jax.Array, *, pad: int, flip: bool) -> jax.Array:
    """Random crop of the zero-padded images back to their size, and a random horizontal flip, per image."""
    batch, height, width, channels = images.shape
    crop_key, flip_key = jax.random.split(key)
    if pad:
        offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * pad + 1)
        padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        images = jax.vmap(lambda image, offset: jax.lax.dynamic_slice(
            image, (offset[0], offset[1], 0), (height, width, channels)))(padded, offsets)
    if flip:
        flips = jax.random.bernoulli(flip_key, 0.5, (batch,))
        images = jnp.where(flips[:, None, None, None], images[:, :, ::-1, :], images)
    return images


def random_resized_crop(images: jax.Array, key: jax.Array, *, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> jax.Array:
    """Inception's crop per image (a fraction `scale` of the area, aspect `ratio` log-uniform, clipped to the
    image) resized back to the image's size with bilinear antialiasing: the host pipeline's ImageNet training crop
    (one draw instead of TensorFlow's ten tries) for a device-resident set of large images."""
    batch, height, width, channels = images.shape
    area_key, ratio_key, y_key, x_key = jax.random.split(key, 4)
    area = jax.random.uniform(area_key, (batch,), minval=scale[0], maxval=scale[1]) * height * width
    aspect = jnp.exp(jax.random.uniform(ratio_key, (batch,), minval=np.log(ratio[0]), maxval=np.log(ratio[1])))
    crop_w = jnp.clip(jnp.sqrt(area * aspect), 1.0, width)
    crop_h = jnp.clip(jnp.sqrt(area / aspect), 1.0, height)
    top = jax.random.uniform(y_key, (batch,)) * (height - crop_h)
    left = jax.random.uniform(x_key, (batch,)) * (width - crop_w)

    def crop(image, h, w, y, x):  # output = input * scale + translation, per spatial axis
        zoom = jnp.stack([height / h, width / w])
        return jax.image.scale_and_translate(image.astype(jnp.float32), (height, width, channels), (0, 1), zoom,
                                             -jnp.stack([y, x]) * zoom, "linear", antialias=True)
    cropped = jax.vmap(crop)(images, crop_h, crop_w, top, left)
    return jnp.clip(jnp.round(cropped), 0, 255).astype(images.dtype)


def epoch_permutation(key: jax.Array, epoch, *, num_examples: int) -> jax.Array:
    """The order in which epoch `epoch` visits the training examples: a fresh permutation each epoch, drawn once
    per epoch (not per step: sorting N keys every step cost ~0.3 ms per 1,000 examples on the CPU)."""
    permutation_key, _ = jax.random.split(key)
    return jax.random.permutation(jax.random.fold_in(permutation_key, epoch), num_examples)


def train_batch(arrays: dict, key: jax.Array, step, *, batch_size: int, augmentation: Augmentation) -> dict:
    """The augmented, normalised global batch of `step` from device-resident `arrays` {'image', 'label',
    'order'}, where `order` is `epoch_permutation(key, epoch of step)`. Each epoch has
    `num_examples // batch_size` steps: its last partial batch is dropped."""
    _, augment_key = jax.random.split(key)
    steps_per_epoch = arrays["label"].shape[0] // batch_size
    position = jnp.remainder(step, steps_per_epoch)
    indices = jax.lax.dynamic_slice(arrays["order"], (position * batch_size,), (batch_size,))
    images, step_key = arrays["image"][indices], jax.random.fold_in(augment_key, step)
    if augmentation.crop == "random_resized_crop":
        crop_key, step_key = jax.random.split(step_key)
        images = random_resized_crop(images, crop_key)
        images = pad_crop_flip(images, step_key, pad=0, flip=augmentation.flip)
    else:
        images = pad_crop_flip(images, step_key, pad=augmentation.pad, flip=augmentation.flip)
    return {"image": normalize(images, augmentation.mean, augmentation.std), "label": arrays["label"][indices]}


def eval_batches(images: np.ndarray, labels: np.ndarray, batch_size: int):
    """Host-side: every example exactly once, the last batch padded, with a `mask` of the real ones."""
    num_examples = len(labels)
    for start in range(0, num_examples, batch_size):
        stop = min(start + batch_size, num_examples)
        pad = batch_size - (stop - start)
        yield {
            "image": np.concatenate([images[start:stop], np.zeros((pad,) + images.shape[1:], images.dtype)]),
            "label": np.concatenate([labels[start:stop], np.zeros((pad,), labels.dtype)]).astype(np.int32),
            "mask": np.arange(batch_size) < stop - start,
        }


@dataclasses.dataclass(kw_only=True)
class DeviceData(ExperimentData):
    """Host numpy arrays (uint8 images), moved once to the devices and batched inside the jitted step."""

    train_images: np.ndarray  # (N, H, W, C) uint8, the long-tailed subset
    train_labels: np.ndarray  # (N,) int32
    test_images: np.ndarray
    test_labels: np.ndarray
    num_train: int = dataclasses.field(init=False)
    image_shape: tuple = dataclasses.field(init=False)

    def __post_init__(self):
        self.num_train, self.image_shape = len(self.train_labels), tuple(self.train_images.shape[1:])

    def feed(self, batch_size: int, seed: int, mesh) -> "DeviceFeed":
        return DeviceFeed(self, batch_size, seed, NamedSharding(mesh, PartitionSpec()))


class DeviceFeed:
    """The whole training set on the devices (replicated); step `s`'s batch is a pure function of
    `(seed, s)` computed inside the jitted step, so nothing crosses from the host per step. `inputs(step)`
    gives the dispatch starting at `step` the arrays and its epoch's permutation (drawn on the device once per
    epoch; a dispatch never crosses an epoch)."""

    supports_scan = True

    def __init__(self, data: DeviceData, batch_size: int, seed: int, replicated):
        self.data, self.batch_size = data, batch_size
        self.key = jax.random.fold_in(jax.random.key(seed), 1)
        self.arrays = jax.device_put({"image": data.train_images, "label": data.train_labels.astype(np.int32)},
                                     replicated)
        self.steps_per_epoch = data.num_train // batch_size
        self._permutation = jax.jit(functools.partial(epoch_permutation, num_examples=data.num_train),
                                    out_shardings=replicated)
        self._epoch, self._order = None, None

    def inputs(self, step: int) -> dict:
        epoch = step // self.steps_per_epoch
        if epoch != self._epoch:
            self._epoch, self._order = epoch, self._permutation(self.key, epoch)
        return {**self.arrays, "order": self._order}

    def batch(self, inputs, step):
        return train_batch(inputs, self.key, step, batch_size=self.batch_size, augmentation=self.data.augmentation)

    def eval_batches(self, eval_batch_size: int, sharding):
        for batch in eval_batches(self.data.test_images, self.data.test_labels, eval_batch_size):
            yield {k: global_array(v, sharding, eval_batch_size) for k, v in batch.items()}


def put_process_batch(batch: dict, keys, sharding: NamedSharding) -> dict:
    """This process's share of a global batch from the host pipeline (`keys` of it) as global arrays."""
    return {k: jax.make_array_from_process_local_data(sharding, batch[k]) for k in keys}


def global_array(local: np.ndarray, sharding: NamedSharding, global_batch: int) -> jax.Array:
    """This process's share of a global batch as a slice of the host array (every process holds the same
    global batch), assembled into one global array."""
    per_process = global_batch // jax.process_count()
    start = jax.process_index() * per_process
    return jax.make_array_from_process_local_data(sharding, local[start:start + per_process])
