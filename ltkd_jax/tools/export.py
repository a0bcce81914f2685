"""`python -m ltkd_jax.tools.export --workdir=RUN --format=saved_model|tflite --out=PATH [--quantize=int8]`

The model a finished run trained (its final checkpoint, eval mode) converted by jax2tf into a TensorFlow
SavedModel (PATH a directory) or a LiteRT/TFLite flat buffer (PATH a file). Input: float32 NHWC raw pixel values
0-255 at the training image size (the normalisation is inside); output: logits (N, classes). Written with it:
the class names, one per line (`labels.txt` inside a SavedModel, `<name>.labels.txt` beside a TFLite file), and
`<PATH>.evaluation.json`: the artefact run on the test split by TensorFlow / the TFLite interpreter, its
per-group accuracy next to the JAX model's, their largest logit difference and argmax agreement (also printed). `--quantize=int8`: post-training quantization of
weights and activations, calibrated on training images (TFLite only; input and output stay float32).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import jax
import numpy as np
from etils import epath

from ltkd_jax import distill, experiment, io, methods, models, run_dir, train
from ltkd_jax.data import tf_env
from ltkd_jax.train import metrics

FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = ("none", "int8")
LABELS_FILE = "labels.txt"
CALIBRATION_IMAGES = 256  # training images the int8 ranges are calibrated on (seeded choice)
EVAL_BATCH = 256


def restore_run(workdir: str):
    """`(config, info, model, variables)` of the finished run in `workdir`: its final checkpoint on the host and
    its data set's description (no image read); a one-line ValueError where the run is not a finished one."""
    config = run_dir.read_config(workdir)
    if config.get("population"):
        raise ValueError(f"{workdir} holds a population: give one of its members, <workdir>/<member>")
    info = experiment.dataset_info(config)
    if experiment.trained_on(workdir) not in (None, info.name):
        raise ValueError(f"the data of run {workdir} changed since it was trained ({experiment.trained_on(workdir)} "
                         f"then, {info.name} now): train it again")
    model = models.get_model(config.student_model, info.num_classes)
    trained = model
    if methods.METHODS[config.method].kind == "feature":  # the checkpoint holds the student and its connector
        trained = distill.build_student(config.method, config.teacher_model, config.student_model, info.num_classes,
                                        info.image_shape, **dict(config.distill))
    variables, step_dir = train.checkpoint.restore_variables(
        workdir, models.abstract_variables(trained, (1, *info.image_shape)), what="run")
    if trained is not model:
        variables = {kind: tree["student"] for kind, tree in variables.items()}
    step, total = int(os.path.basename(step_dir)), config.num_epochs * info.steps_per_epoch(config.batch_size)
    if step != total:
        raise ValueError(f"run {workdir} is not finished: its last checkpoint is step {step} of {total}; run its "
                         "command again to finish it")
    return config, info, model, jax.device_get(variables)


def predict_function(model, variables, mean, std):
    """Logits of float32 raw pixels (N, H, W, C) in 0-255, in eval mode (what the artefacts compute)."""
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)

    def predict(images):
        return model.apply(variables, (images / 255.0 - mean) / std, train=False)
    return predict


def save_model(predict, image_shape, path: str) -> None:
    """`predict` through jax2tf (batch size left open) as a SavedModel with a `serving_default` signature."""
    tf = tf_env.hide_accelerators_from_tf()
    from jax.experimental import jax2tf  # pylint: disable=import-outside-toplevel

    module = tf.Module()
    module.predict = tf.function(
        jax2tf.convert(predict, polymorphic_shapes=["(b, ...)"], with_gradient=False), autograph=False,
        input_signature=[tf.TensorSpec((None, *image_shape), tf.float32, name="images")])
    tf.saved_model.save(module, path, signatures={"serving_default": module.predict})


def tflite_model(saved_model: str, calibration_images=None) -> bytes:
    """The SavedModel as a TFLite flat buffer; int8 weights and activations where `calibration_images` are given."""
    tf = tf_env.hide_accelerators_from_tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    if calibration_images is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in calibration_images)
    return converter.convert()


class Artefact:
    """An exported model run by TensorFlow: `Artefact(path)(images)` gives the logits of float32 raw pixels."""

    def __init__(self, path: str):
        if not os.path.exists(path):
            raise ValueError(f"model {path} does not exist (a SavedModel directory or a .tflite file)")
        tf = tf_env.hide_accelerators_from_tf()
        self.path = path
        if os.path.isdir(path):
            self._signature = tf.saved_model.load(path).signatures["serving_default"]
            self.image_shape = tuple(self._signature.inputs[0].shape[1:])
            self._interpreter = None
        else:
            self._interpreter = _interpreter_class(tf)(model_path=path)
            self.image_shape = tuple(int(d) for d in self._interpreter.get_input_details()[0]["shape"][1:])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if self._interpreter is None:
            return next(iter(self._signature(images=images).values())).numpy()
        interpreter = self._interpreter
        source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        if tuple(source["shape"]) != images.shape:
            interpreter.resize_tensor_input(source["index"], images.shape)
            interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], images)
        interpreter.invoke()
        return interpreter.get_tensor(target["index"]).copy()


def _interpreter_class(tf):
    """LiteRT's interpreter where `ai_edge_litert` is installed (the current one, what a device runs), else
    TensorFlow's own (deprecated in its favour, but already a dependency)."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
    except ImportError:
        return tf.lite.Interpreter
    return Interpreter


def labels_path(artefact: str) -> str:
    """Where an artefact's class names are: `labels.txt` inside a SavedModel, `<name>.labels.txt` beside a
    TFLite file."""
    if os.path.isdir(artefact):
        return os.path.join(artefact, LABELS_FILE)
    return os.path.splitext(artefact)[0] + "." + LABELS_FILE


def labels_of(path: str) -> list:
    """The class names written with an artefact."""
    return epath.Path(labels_path(path)).read_text().splitlines()


def all_logits(predict, images: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(predict(images[start:start + EVAL_BATCH].astype(np.float32)))
                           for start in range(0, len(images), EVAL_BATCH)])


def accuracy_summary(logits: np.ndarray, data) -> dict:
    """Overall, per-group and per-shot accuracy of test logits (train.metrics' summary of the run's records)."""
    labels = np.asarray(data.test_labels)
    counts = {"examples": np.bincount(labels, minlength=data.num_classes),
              "correct": np.bincount(labels[logits.argmax(1) == labels], minlength=data.num_classes),
              "loss_sum": 0.0}
    summary = metrics.summarize(counts, data.group_ids, data.train_counts)
    summary.pop("loss")
    return summary


def export(workdir: str, fmt: str, out: str, quantize: str = "none") -> dict:
    """Write the artefact, its class names and `<out>.evaluation.json` (each complete or not at all; an earlier
    export at `out` is replaced); returns the evaluation."""
    if fmt not in FORMATS:
        raise ValueError(f"--format={fmt!r}; allowed: {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS or (quantize != "none" and fmt != "tflite"):
        raise ValueError(f"--quantize={quantize!r} with --format={fmt}; allowed: none, and int8 for tflite")
    out = os.path.abspath(out)
    if os.path.isdir(out) and not (fmt == "saved_model" and os.path.exists(os.path.join(out, "saved_model.pb"))):
        raise ValueError(f"--out={out} is a directory that is not a SavedModel; name a new path")
    config, info, model, variables = restore_run(workdir)
    config.dataset.device_resident = True  # the splits as arrays (in-memory data sets)
    data, _ = experiment.load_data(config)
    if not hasattr(data, "test_images"):
        raise ValueError(f"{info.name} does not fit in memory; export evaluates in-memory data sets only")
    predict = predict_function(model, variables, info.mean, info.std)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export_", dir=os.path.dirname(out))  # renamed into place when complete
    try:
        saved = os.path.join(staging, "saved_model")
        save_model(predict, data.image_shape, saved)
        if fmt == "saved_model":
            artefact = saved
        else:
            calibration = None
            if quantize == "int8":
                chosen = np.random.default_rng(0).choice(len(data.train_images), size=min(
                    CALIBRATION_IMAGES, len(data.train_images)), replace=False)
                calibration = data.train_images[np.sort(chosen)]
            artefact = os.path.join(staging, "model.tflite")
            with open(artefact, "wb") as f:
                f.write(tflite_model(saved, calibration))
        jax_logits = all_logits(jax.jit(predict), data.test_images)
        artefact_logits = all_logits(Artefact(artefact), data.test_images)
        evaluation = {
            "workdir": os.path.abspath(workdir), "model": config.student_model, "method": config.method,
            "format": fmt, "quantize": quantize, "bytes": _size(artefact), "image_shape": list(data.image_shape),
            "num_groups": data.num_groups, "class_names": list(info.class_names),
            "max_abs_logit_difference": float(np.abs(artefact_logits - jax_logits).max()),
            "argmax_agreement": float(100 * np.mean(artefact_logits.argmax(1) == jax_logits.argmax(1))),
            "jax": accuracy_summary(jax_logits, data), "artefact": accuracy_summary(artefact_logits, data)}
        labels_text = "".join(f"{name}\n" for name in info.class_names)
        if fmt == "saved_model":
            io.write_file(labels_path(artefact), labels_text)
            if os.path.exists(out):  # an earlier export: moved aside, deleted once the new one is in place
                os.replace(out, os.path.join(staging, "previous"))
        else:
            io.write_file(labels_path(out), labels_text)
        os.replace(artefact, out)
        io.write_file(out + ".evaluation.json", json.dumps(metrics.jsonable(evaluation), indent=1))
        evaluation["labels"] = labels_path(out)
        return evaluation
    finally:
        epath.Path(staging).rmtree(missing_ok=True)


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def format_evaluation(evaluation: dict) -> str:
    kind = f"{evaluation['format']}" + (f" {evaluation['quantize']}" if evaluation["quantize"] != "none" else "")
    groups = metrics.group_names(evaluation["num_groups"])
    columns = [(name, f"accuracy_{name}") for name in groups] + [("all", "accuracy")]
    lines = ["| model | " + " | ".join(name for name, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, summary in (("JAX float32", evaluation["jax"]), (kind, evaluation["artefact"])):
        lines.append(f"| {label} | " + " | ".join(_percent(summary.get(key)) for _, key in columns) + " |")
    return "\n".join(lines + [
        "", f"{evaluation['bytes'] / 1024:.0f} KiB; largest logit difference {evaluation['max_abs_logit_difference']:.2g};"
        f" same class as JAX for {evaluation['argmax_agreement']:.2f}% of the test images"])


def _percent(value) -> str:
    return "–" if value is None or value != value else f"{value:.2f}"


def main(argv=None) -> int:
    """The command line: 2 for bad flags (argparse), 1 with one `error:` line for any other mistake."""
    parser = argparse.ArgumentParser(prog="python -m ltkd_jax.tools.export", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="the run directory (holds config.json and checkpoints/)")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="the SavedModel directory or the .tflite file to write")
    parser.add_argument("--quantize", default="none", choices=QUANTIZATIONS)
    args = parser.parse_args(argv)
    try:
        evaluation = export(args.workdir, args.format, args.out, args.quantize)
    except (ValueError, OSError) as error:  # a damaged checkpoint (CheckpointError) among them
        print(f"error: {io.first_line(error)}", file=sys.stderr)
        return 1
    print(format_evaluation(evaluation))
    print(f"wrote {os.path.abspath(args.out)}, {evaluation['labels']} and {os.path.abspath(args.out)}.evaluation.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
