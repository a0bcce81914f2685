"""The two training augmentations draw crops and flips alike: the device-resident step (`device.train_batch`)
and the tf.data host pipeline (`tf_preprocess.train_fn`).

Every pixel of the test image is distinct, so each augmented output identifies its (dy, dx, flip) exactly (the
table is built here with plain numpy); the counts of the 2 * (2 pad + 1)^2 outcomes must fit a uniform
distribution in each path and agree between paths (chi-square tests at p = 0.001; the seeds are fixed, so the
test is deterministic)."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltkd_jax.data import device, registry, sampling

PAD, H, W = 2, 6, 5
BATCH, STEPS = 64, 80  # 5,120 draws per path
IMAGE = np.broadcast_to((1 + np.arange(H * W, dtype=np.uint8).reshape(H, W))[:, :, None], (H, W, 3)).copy()


def _reference(dy: int, dx: int, flip: bool) -> np.ndarray:
    """IMAGE zero-padded by PAD, cropped back to (H, W) at (dy, dx), mirrored if `flip`."""
    crop = np.pad(IMAGE, ((PAD, PAD), (PAD, PAD), (0, 0)))[dy:dy + H, dx:dx + W]
    return crop[:, ::-1] if flip else crop


IMAGES = {(dy, dx, flip): _reference(dy, dx, flip)
          for dy in range(2 * PAD + 1) for dx in range(2 * PAD + 1) for flip in (False, True)}
OUTCOMES = {image.tobytes(): key for key, image in IMAGES.items()}
assert len(OUTCOMES) == 2 * (2 * PAD + 1) ** 2  # all distinct
KEYS = sorted(OUTCOMES.values())


def _counts(images: np.ndarray) -> np.ndarray:
    assert images.dtype == np.uint8 and images.shape[1:] == IMAGE.shape
    found = [OUTCOMES.get(image.tobytes()) for image in images]
    assert None not in found, "an output that no (dy, dx, flip) produces"
    return np.array([found.count(k) for k in KEYS])


def _chi2_critical(df: int, z: float = 3.0902) -> float:
    """Upper p = 0.001 point of chi-square(df) (Wilson-Hilferty; z is the normal's 0.999 quantile)."""
    return df * (1 - 2 / (9 * df) + z * np.sqrt(2 / (9 * df))) ** 3


def device_draws() -> np.ndarray:
    arrays = {"image": jnp.asarray(np.broadcast_to(IMAGE, (BATCH,) + IMAGE.shape)),
              "label": jnp.zeros(BATCH, jnp.int32), "order": jnp.arange(BATCH)}
    aug = device.Augmentation(pad=PAD, flip=True, mean=(0.0,) * 3, std=(1.0,) * 3)
    draw = jax.jit(lambda step: device.train_batch(arrays, jax.random.key(3), step, batch_size=BATCH,
                                                   augmentation=aug)["image"])
    out = np.concatenate([np.asarray(draw(step)) for step in range(STEPS)])
    return np.rint(out * 255.0).astype(np.uint8)  # undo the (x / 255 - 0) / 1 normalisation


def tf_draws() -> np.ndarray:
    from ltkd_jax.data import tf_env, tf_preprocess

    tf = tf_env.hide_accelerators_from_tf()
    spec = registry.DatasetSpec(name="positions", tfds_name="none", num_classes=1, image_shape=IMAGE.shape,
                                train_split="train", eval_split="test", mean=(0.0,) * 3, std=(1.0,) * 3,
                                augment="pad_crop_flip", pad=PAD, in_memory=True, order_key=None)
    info = types.SimpleNamespace(spec=spec, image_shape=IMAGE.shape)
    n = STEPS * BATCH
    records = tf.data.Dataset.from_tensor_slices({
        "image": tf.fill([n], tf.io.encode_png(IMAGE)), "label": tf.zeros(n, tf.int32),
        "index": tf.range(n, dtype=tf.int64)})
    fn = tf_preprocess.train_fn(info, sampling.augment_seed(3, 0))
    batches = records.map(fn).batch(1024).as_numpy_iterator()
    return np.concatenate([b["image"] for b in batches])


@pytest.fixture(scope="module")
def counts():
    return {"device": _counts(device_draws()), "tf": _counts(tf_draws())}


@pytest.mark.parametrize("path", ["device", "tf"])
def test_each_path_draws_offsets_and_flips_uniformly(counts, path):
    observed = counts[path]
    n, k = observed.sum(), observed.size
    assert n == STEPS * BATCH
    expected = n / k
    assert ((observed - expected) ** 2 / expected).sum() < _chi2_critical(k - 1)
    keys = np.array(KEYS)
    flips = observed[keys[:, 2] == 1].sum() / n
    assert abs(flips - 0.5) < 4 * np.sqrt(0.25 / n)
    for axis in (0, 1):  # dy and dx: each of 0..2 pad with probability 1 / (2 pad + 1)
        for offset in range(2 * PAD + 1):
            p = 1 / (2 * PAD + 1)
            share = observed[keys[:, axis] == offset].sum() / n
            assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / n), (axis, offset, share)


def test_paths_agree_with_each_other(counts):
    table = np.stack([counts["device"], counts["tf"]]).astype(float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    statistic = ((table - expected) ** 2 / expected).sum()
    assert statistic < _chi2_critical((table.shape[0] - 1) * (table.shape[1] - 1))


def test_a_biased_draw_is_caught():
    """The tests above can fail: offsets in [0, 2 pad) instead of [0, 2 pad] leave a fifth of the cells empty."""
    rng = np.random.default_rng(0)
    dy, dx = rng.integers(0, 2 * PAD, size=(2, STEPS * BATCH))
    flip = rng.random(STEPS * BATCH) < 0.5
    observed = _counts(np.stack([IMAGES[key] for key in zip(dy, dx, flip)]))
    expected = observed.sum() / observed.size
    assert ((observed - expected) ** 2 / expected).sum() > _chi2_critical(observed.size - 1)


def test_random_resized_crop_on_the_device():
    """The crop of an image larger than 64 px: the whole image at scale and aspect 1 is the image itself; a
    constant image stays constant; each key its own crop of the same shape and dtype; folders and tfds sets pick
    it above 64 px."""
    # Jitted, as the training step runs it (one compilation per shape instead of one per operation).
    crop = jax.jit(device.random_resized_crop, static_argnames=("scale", "ratio"))
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (3, 80, 72, 3)), jnp.uint8)
    whole = crop(images, jax.random.key(0), scale=(1.0, 1.0), ratio=(72 / 80, 72 / 80))
    np.testing.assert_array_equal(np.asarray(whole), np.asarray(images))
    grey = jnp.full((2, 80, 80, 1), 77, jnp.uint8)
    np.testing.assert_array_equal(np.asarray(crop(grey, jax.random.key(1))), 77)
    first, second = (np.asarray(crop(images, jax.random.key(k))) for k in (2, 3))
    assert first.shape == images.shape and first.dtype == np.uint8 and not np.array_equal(first, second)
    assert [registry.augmentation_for(size) for size in (32, 64, 65, 224)] == [
        "pad_crop_flip", "pad_crop_flip", "random_resized_crop", "random_resized_crop"]
    # The training batch takes the crop its augmentation names: a constant image stays constant under both crops
    # (random-resized has no zero padding to show), and the pad-crop path's zeros appear at the border.
    arrays = {"image": jnp.full((4, 80, 80, 1), 200, jnp.uint8), "label": jnp.arange(4),
              "order": jnp.arange(4)}
    for crop, zero_border in (("random_resized_crop", False), ("pad_crop_flip", True)):
        augmentation = device.Augmentation(pad=10, flip=True, mean=(0.0,), std=(1.0 / 255,), crop=crop)
        batch = jax.jit(device.train_batch, static_argnames=("batch_size", "augmentation"))(
            arrays, jax.random.key(4), 0, batch_size=4, augmentation=augmentation)
        pixels = np.asarray(batch["image"])
        assert pixels.shape == (4, 80, 80, 1) and bool((pixels == 0).any()) == zero_border, crop
