"""tf.data per-example preprocessing (imported only by the tf backend)."""
from __future__ import annotations

from ltkd_jax.data import _env

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


def train_fn(info, aug_seed: int):
    """Decode + augment one record to a uint8 image; randomness from (aug_seed, canonical index): stateless."""
    tf = _env.hide_accelerators_from_tf()
    spec = info.spec
    h, w, c = info.image_shape
    base = tf.constant(aug_seed, tf.int64)

    def seeds_of(index):
        return tf.random.experimental.stateless_split(tf.stack([base, tf.cast(index, tf.int64)]), num=2)

    if spec.augment == "pad_crop_flip":
        pad = spec.pad

        def fn(ex):
            seeds = seeds_of(ex["index"])
            image = _decode_fixed(tf, ex["image"], spec.image_shape)
            image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
            offset = tf.random.stateless_uniform([2], seed=seeds[0], minval=0, maxval=2 * pad + 1, dtype=tf.int32)
            image = tf.slice(image, tf.stack([offset[0], offset[1], 0]), [h, w, c])
            flip = tf.random.stateless_uniform([], seed=seeds[1]) < 0.5
            image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
            return {"image": image, "label": ex["label"], "index": tf.cast(ex["index"], tf.int32)}

        return fn

    if spec.augment == "random_resized_crop":

        def fn(ex):
            seeds = seeds_of(ex["index"])
            encoded = ex["image"]
            shape = tf.image.extract_jpeg_shape(encoded)
            begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
                shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]), seed=seeds[0],
                min_object_covered=0.0, aspect_ratio_range=RRC_RATIO, area_range=RRC_SCALE, max_attempts=10,
                use_image_if_no_bounding_boxes=True)
            window = tf.stack([begin[0], begin[1], size[0], size[1]])
            image = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
            image = _to_uint8(tf, tf.image.resize(image, [h, w], method="bilinear", antialias=True))
            flip = tf.random.stateless_uniform([], seed=seeds[1]) < 0.5
            image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
            image.set_shape((h, w, 3))
            return {"image": image, "label": ex["label"], "index": tf.cast(ex["index"], tf.int32)}

        return fn
    raise ValueError(f"unknown augmentation {spec.augment!r}")


def eval_fn(info):
    """Decode + (ImageNet: resize shorter side, centre crop) to a uint8 image; adds ``mask=True``."""
    tf = _env.hide_accelerators_from_tf()
    spec = info.spec
    h, w, c = info.image_shape

    if spec.augment == "random_resized_crop":
        resize = int(round(h * EVAL_RESIZE_RATIO))

        def prep(encoded):
            image = tf.io.decode_jpeg(encoded, channels=3)
            shape = tf.shape(image)
            ih, iw = shape[0], shape[1]
            short = tf.minimum(ih, iw)
            # torchvision Resize(int): shorter side -> resize, longer side int(resize * long / short)
            nh = tf.where(ih <= iw, resize, (resize * ih) // short)
            nw = tf.where(ih <= iw, (resize * iw) // short, resize)
            image = tf.image.resize(image, tf.stack([nh, nw]), method="bilinear", antialias=True)
            top = tf.cast(tf.round(tf.cast(nh - h, tf.float32) / 2.0), tf.int32)
            left = tf.cast(tf.round(tf.cast(nw - w, tf.float32) / 2.0), tf.int32)
            image = _to_uint8(tf, tf.slice(image, tf.stack([top, left, 0]), [h, w, 3]))  # crop, then round
            image.set_shape((h, w, 3))
            return image
    else:

        def prep(encoded):
            return _decode_fixed(tf, encoded, spec.image_shape)

    def fn(ex):
        return {"image": prep(ex["image"]), "label": ex["label"],
                "index": tf.cast(ex["index"], tf.int32), "mask": tf.constant(True)}

    return fn
