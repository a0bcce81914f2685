"""The ImageNet host-pipeline benchmark runs at tiny sizes and measures what training runs."""
import numpy as np
import pytest

from ltkd_jax.tools import input_bench


def test_photo_jpegs_are_distinct_imagenet_shaped_photos():
    from ltkd_jax.data import tf_env
    tf = tf_env.hide_accelerators_from_tf()
    jpegs = input_bench.photo_jpegs(tf, 12, seed=1)
    assert len(set(jpegs)) == 12
    shapes = {tuple(tf.image.extract_jpeg_shape(j).numpy()[:2]) for j in jpegs}
    assert shapes <= {(h, w) for h, w, _ in input_bench.IMAGENET_SHAPES} and len(shapes) > 1
    image = tf.io.decode_jpeg(jpegs[0]).numpy()
    assert image.dtype == np.uint8 and image.std() > 20  # a photograph, not a flat field


def test_input_bench_prints_rows_and_sizes_the_host(capsys):
    assert input_bench.main(["--threads=1", "--batch_size=8", "--num_images=16", "--num_batches=2",
                             "--image_size=32", "--to_device", "--step_img_per_s=1000"]) == 0
    printed = capsys.readouterr().out
    for row in ("| train | 1 |", "| train + to device | 1 |", "| eval | 1 |", "| eval + to device | 1 |"):
        assert row in printed
    assert "| uint8 |" in printed and "| float32 |" not in printed
    assert "feeding 1,000 img/s needs about" in printed and "at the 1-thread rate" in printed


def test_input_bench_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        input_bench.main(["--threads=0"])
    assert "--threads values must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        input_bench.main(["--batch_size=0"])
    assert "--batch_size=0 must be >= 1" in capsys.readouterr().err
    for value in ("-5", "nan", "inf"):
        with pytest.raises(SystemExit):
            input_bench.main([f"--step_img_per_s={value}"])
        assert f"--step_img_per_s={float(value)} must be a finite number >= 0" in capsys.readouterr().err


def test_input_bench_to_device_needs_a_batch_the_devices_can_share(capsys, monkeypatch):
    """--to_device splits each batch over the devices as the trainer does: a batch size the device count does not
    divide is one error line (exit status 2), not a traceback from the device put."""
    import jax
    monkeypatch.setattr(jax, "device_count", lambda *args, **kwargs: 3)
    assert input_bench.main(["--threads=1", "--batch_size=8", "--num_images=16", "--num_batches=1",
                             "--image_size=32", "--to_device"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("input_bench: error: batch_size=8 is not divisible by the device count 3")
    assert err.count("\n") == 1 and "Traceback" not in err
