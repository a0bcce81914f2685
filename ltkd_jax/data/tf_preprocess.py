"""tf.data per-example preprocessing of the host pipeline (imported only when a tf.data pipeline is built)."""
from __future__ import annotations

from ltkd_jax.data import tf_env

RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)
EVAL_RESIZE_RATIO = 256.0 / 224.0  # resize 256 + centre crop 224, scaled with the image size


def _to_uint8(tf, image):
    """A resized float image in [0, 255] back to uint8, rounded (PIL's resize, torchvision's path, returns
    uint8 too; halves go to even here). Batches stay uint8 until the device normalises them: a quarter of the
    bytes through host memory and onto the accelerator, and no float work on the host (it cost a third of the
    ImageNet per-image time)."""
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def _decode_fixed(tf, encoded, shape):
    image = tf.io.decode_image(encoded, channels=shape[-1], expand_animations=False)
    image.set_shape(shape)
    return image


def _pad_crop(tf, info):
    """(encoded, seed) -> the decoded image zero-padded by ``pad`` and cropped back to size at a random offset."""
    spec, (h, w, c), pad = info.spec, info.image_shape, info.spec.pad

    def crop(encoded, seed):
        image = tf.pad(_decode_fixed(tf, encoded, spec.image_shape), [[pad, pad], [pad, pad], [0, 0]])
        offset = tf.random.stateless_uniform([2], seed=seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32)
        return tf.slice(image, tf.stack([offset[0], offset[1], 0]), [h, w, c])

    return crop


def _random_resized_crop(tf, info):
    """(encoded JPEG, seed) -> a random-resized crop (scale RRC_SCALE, ratio RRC_RATIO) decoded and resized."""
    h, w, _ = info.image_shape

    def crop(encoded, seed):
        whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4])
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.image.extract_jpeg_shape(encoded), bounding_boxes=whole_image, seed=seed, min_object_covered=0.0,
            aspect_ratio_range=RRC_RATIO, area_range=RRC_SCALE, max_attempts=10, use_image_if_no_bounding_boxes=True)
        window = tf.stack([begin[0], begin[1], size[0], size[1]])
        image = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
        return _to_uint8(tf, tf.image.resize(image, [h, w], method="bilinear", antialias=True))

    return crop


_TRAIN_CROPS = {"pad_crop_flip": _pad_crop, "random_resized_crop": _random_resized_crop}


def train_fn(info, aug_seed: int):
    """Decode + augment one record to a uint8 image; randomness from (aug_seed, canonical index): stateless."""
    tf = tf_env.hide_accelerators_from_tf()
    if info.spec.augment not in _TRAIN_CROPS:
        raise ValueError(f"unknown augmentation {info.spec.augment!r}; allowed: {', '.join(_TRAIN_CROPS)}")
    crop = _TRAIN_CROPS[info.spec.augment](tf, info)
    base = tf.constant(aug_seed, tf.int64)

    def fn(ex):
        seeds = tf.random.experimental.stateless_split(tf.stack([base, tf.cast(ex["index"], tf.int64)]), num=2)
        image = crop(ex["image"], seeds[0])
        flip = tf.random.stateless_uniform([], seed=seeds[1]) < 0.5
        image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
        image.set_shape(info.image_shape)
        return {"image": image, "label": ex["label"], "index": tf.cast(ex["index"], tf.int32)}

    return fn


def _resize_centre_crop(tf, encoded, h, w):
    """torchvision's Resize(int) (shorter side to ``h * EVAL_RESIZE_RATIO``) then CenterCrop((h, w))."""
    resize = int(round(h * EVAL_RESIZE_RATIO))
    image = tf.io.decode_jpeg(encoded, channels=3)
    shape = tf.shape(image)
    ih, iw = shape[0], shape[1]
    short = tf.minimum(ih, iw)
    # shorter side -> resize, longer side int(resize * long / short)
    nh = tf.where(ih <= iw, resize, (resize * ih) // short)
    nw = tf.where(ih <= iw, (resize * iw) // short, resize)
    image = tf.image.resize(image, tf.stack([nh, nw]), method="bilinear", antialias=True)
    top = tf.cast(tf.round(tf.cast(nh - h, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(nw - w, tf.float32) / 2.0), tf.int32)
    return _to_uint8(tf, tf.slice(image, tf.stack([top, left, 0]), [h, w, 3]))  # crop, then round


def eval_fn(info):
    """Decode + (ImageNet: resize shorter side, centre crop) to a uint8 image; adds ``mask=True``."""
    tf = tf_env.hide_accelerators_from_tf()
    spec = info.spec
    h, w, _ = info.image_shape

    def fn(ex):
        if spec.augment == "random_resized_crop":
            image = _resize_centre_crop(tf, ex["image"], h, w)
        else:
            image = _decode_fixed(tf, ex["image"], spec.image_shape)
        image.set_shape(info.image_shape)
        return {"image": image, "label": ex["label"],
                "index": tf.cast(ex["index"], tf.int32), "mask": tf.constant(True)}

    return fn
