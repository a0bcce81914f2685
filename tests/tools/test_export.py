"""Exported models compute what JAX computes: one model of every family (each model module) through jax2tf as a
SavedModel and as a float TFLite flat buffer gives the JAX eval-mode logits within 1e-5 of their largest magnitude,
at a batch size other than the one traced (the batch dimension stays open). The end-to-end export of a trained run
(labels, evaluation, int8) is tested with the image-folder run: tests/data/test_image_folder.py."""
import jax
import numpy as np
import pytest

from ltkd_jax import models
from ltkd_jax.models.resnet_blocks import BasicBlock
from ltkd_jax.models.resnet_imagenet import ImageNetResNet
from ltkd_jax.models.shufflenet import ShuffleNetV1
from ltkd_jax.models.vgg import VGG
from ltkd_jax.tools import export, predict

# One model per family: resnet_cifar, resnet_imagenet, wrn, vgg, mobilenet, shufflenet (the demo models are
# resnet_cifar's blocks; the folder test exports one). The ImageNet ResNet, the VGG and the ShuffleNet are their
# modules with few channels or units: what is exported is each family's layers, and the conversion's time grows
# with the weights and layers (resnet18's 11M weights took most of the test's time).
FAMILIES = {
    "resnet8x4": models.get_model("resnet8x4", 10),
    "resnet_imagenet": ImageNetResNet(num_classes=10, blocks_per_stage=(1, 1, 1, 1), block=BasicBlock,
                                      stage_widths=(8, 8, 16, 16)),
    "wrn_40_1": models.get_model("wrn_40_1", 10),
    "vgg": VGG(num_classes=10, stages=((8,), (8, 8), (16,), (16,), (16,))),
    "mobilenet_v2": models.get_model("mobilenet_v2", 10),
    "shufflenet": ShuffleNetV1(num_classes=10, stage_widths=(48, 96, 192), units_per_stage=(1, 2, 1)),
}
SHAPE = (16, 16, 3)
RELATIVE_TOLERANCE = 1e-5


def random_variables(model, seed=0):
    """Variables of `model` drawn at random (He-scaled kernels, positive variances): an untrained init leaves some
    outputs near zero (zero-initialised scales), which would make the comparison vacuous."""
    rng = np.random.default_rng(seed)
    shapes = models.abstract_variables(model, (1, *SHAPE))

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "kernel" in name:
            return rng.normal(0, np.sqrt(2.0 / np.prod(leaf.shape[:-1])), leaf.shape).astype(np.float32)
        if "var" in name:
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        if "scale" in name:
            return rng.uniform(0.8, 1.2, leaf.shape).astype(np.float32)
        return rng.normal(0, 0.1, leaf.shape).astype(np.float32)
    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_model_and_float_tflite_give_the_jax_logits(tmp_path, family):
    model = FAMILIES[family]
    network = export.predict_function(model, random_variables(model), (0.5, 0.4, 0.3), (0.25, 0.2, 0.3))
    saved = str(tmp_path / "saved_model")
    export.save_model(network, SHAPE, saved)
    (tmp_path / "model.tflite").write_bytes(export.tflite_model(saved))
    pixels = np.random.default_rng(1).integers(0, 256, (5, *SHAPE)).astype(np.float32)
    expected = np.asarray(jax.jit(network)(pixels))
    assert np.isfinite(expected).all() and expected.std() > 0
    for path in (saved, str(tmp_path / "model.tflite")):
        artefact = export.Artefact(path)
        assert artefact.image_shape == SHAPE
        logits = artefact(pixels)
        assert logits.shape == (5, 10)
        assert np.abs(logits - expected).max() <= RELATIVE_TOLERANCE * np.abs(expected).max(), path


def test_an_artefact_that_does_not_exist_is_one_line(tmp_path, capsys):
    assert predict.main([f"--model={tmp_path / 'missing.tflite'}", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "missing.tflite" in err[0]


def test_exporting_a_directory_that_is_not_a_run_is_one_line(tmp_path, capsys):
    assert export.main([f"--workdir={tmp_path}", "--format=tflite", f"--out={tmp_path / 'm.tflite'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and str(tmp_path) in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # int8 is a TFLite quantization
    assert export.main([f"--workdir={tmp_path}", "--format=saved_model", "--quantize=int8",
                        f"--out={tmp_path / 'm'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--quantize='int8'" in err[0] and not (tmp_path / "m").exists()
