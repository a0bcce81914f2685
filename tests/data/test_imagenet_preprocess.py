"""ImageNet evaluation preprocessing against torchvision's own path, PIL: Resize(256) (shorter side) then
CenterCrop(224), on JPEGs of a real photograph. Given the same decoded pixels the two agree to one grey level
everywhere (TF's and PIL's JPEG decoders themselves differ by a few levels, so both start from TF's decode)."""
import numpy as np
import pytest
from PIL import Image

from ltkd_jax.tools import input_bench
from ltkd_jax.data import tf_env, tf_preprocess


def torchvision_eval(decoded: np.ndarray, size: int = 224, resize: int = 256) -> np.ndarray:
    """transforms.Resize(resize) + CenterCrop(size) on a PIL image, as torchvision computes them."""
    h, w = decoded.shape[:2]
    nh, nw = (resize, int(resize * w / h)) if h <= w else (int(resize * h / w), resize)
    resized = np.asarray(Image.fromarray(decoded).resize((nw, nh), Image.BILINEAR))
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return resized[top:top + size, left:left + size]


@pytest.mark.parametrize("image_size", [224, 112])
def test_eval_preprocessing_matches_torchvision(image_size):
    tf = tf_env.hide_accelerators_from_tf()
    fn = tf_preprocess.eval_fn(input_bench.imagenet_info(image_size))
    resize = int(round(image_size * tf_preprocess.EVAL_RESIZE_RATIO))
    for jpeg in input_bench.photo_jpegs(tf, 5, seed=4):
        ours = fn({"image": tf.constant(jpeg), "label": tf.constant(0), "index": tf.constant(0, tf.int64)})
        assert bool(ours["mask"]) and ours["image"].dtype == tf.uint8
        ours = ours["image"].numpy()
        reference = torchvision_eval(tf.io.decode_jpeg(jpeg, channels=3).numpy(), image_size, resize)
        assert ours.shape == reference.shape == (image_size, image_size, 3)
        difference = np.abs(ours.astype(int) - reference.astype(int))
        assert difference.max() <= 1 and difference.mean() < 0.3
