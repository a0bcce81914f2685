"""Image files as the models take them: decoded (PNG, JPEG, BMP, GIF's first frame), converted to the channels
asked for and resized to the training size, uint8 (H, W, C). One reader for the image-folder data set, for
`tools.predict` and for exported models' tests, so a file means the same pixels everywhere."""
from __future__ import annotations

import os

import numpy as np

from ltkd_jax.data import tf_env

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def read_image(path, image_shape) -> np.ndarray:
    """uint8 ``image_shape`` (H, W, C) pixels of the file ``path`` (:func:`convert`ed). A file that is not a
    readable image is a one-line ValueError naming it."""
    tf = tf_env.hide_accelerators_from_tf()
    try:
        data = tf.io.read_file(os.fspath(path))
        image = tf.io.decode_image(data, expand_animations=False)  # its own channels (BMP, GIF refuse 1)
    except (tf.errors.OpError, ValueError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"image {os.fspath(path)} cannot be read: {detail}") from None
    return convert(image, image_shape).numpy()


def native_channels(path) -> int:
    """How many channels the image file `path` stores (3 where it cannot be read: :func:`read_image` names it when
    the caches are built)."""
    tf = tf_env.hide_accelerators_from_tf()
    try:
        return int(tf.io.decode_image(tf.io.read_file(os.fspath(path)), expand_animations=False).shape[-1])
    except (tf.errors.OpError, ValueError):
        return 3


def convert(image, image_shape):
    """A decoded uint8 image tensor (h, w, 1 to 4 channels) as ``image_shape`` (H, W, C): grayscale and RGB(A)
    converted to C channels (1 or 3), resized with antialiasing where the size differs (TensorFlow, in tf.data
    pipelines too)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  # imported by the caller's reader already

    height, width, channels = image_shape
    have = image.shape[-1]
    if have in (2, 4):  # the alpha channel dropped
        image, have = image[..., :have - 1], have - 1
    if have == 1 and channels == 3:
        image = tf.image.grayscale_to_rgb(image)
    elif have == 3 and channels == 1:
        image = tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))), tf.uint8)
    if image.shape[0] != height or image.shape[1] != width:  # unknown (None) sizes in a pipeline: resized
        image = tf.image.resize(image, (height, width), antialias=True)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return image
