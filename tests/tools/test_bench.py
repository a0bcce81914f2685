"""The benchmark runs end to end on the CPU at tiny sizes and prints sane numbers."""
import json

import pytest

from ltkd_jax.tools import bench

TINY = ["--teacher=demo_resnet_teacher", "--student=demo_resnet_student", "--batch_size=16", "--steps=3",
        "--windows=1", "--num_train=128", "--image_size=16", "--channels=1", "--num_classes=10", "--no_torch"]


def test_population_rows_give_img_per_s_per_student(tmp_path, capsys):
    """(The unbatched population program is the trainer's CPU default: tests/train/test_population.py.)"""
    out = tmp_path / "bench.json"
    assert bench.main(TINY + ["--population=1,3", "--vmap=on", f"--json={out}"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["name"].split(" (")[0] for r in rows] == [
        "jax solo program", "jax population of 1, one after another", "jax population of 3, vmapped"]
    solo_ms = rows[0]["ms_per_step"]
    for size, row in zip((1, 3), rows[1:]):  # each student sees the whole batch of 16
        assert row["img_per_s"] == pytest.approx(size * 16 / (row["ms_per_step"] / 1e3), rel=1e-6)
        assert f"per student: {size * solo_ms / row['ms_per_step']:.2f}x solo" in row["name"]
    assert "| jax population of 3," in capsys.readouterr().out


def test_benchmarked_stage_is_the_cifar_recipe_on_the_benched_classes():
    """Each method's stage: the CIFAR recipe's weights (mdistiller's KD and DKD, the paper's LTKD, written out
    here), the benchmarked student and epochs, and a loss bound to the synthetic data's classes."""
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    from ltkd_jax import models  # pylint: disable=import-outside-toplevel

    data = bench.synthetic_data(64, 8, (16, 16, 1), 10)
    student = models.get_model("demo_resnet_student", 10)
    # (CE weight, distillation weight, warm-up epochs, temperature)
    expected = {"kd": (0.1, 0.9, 0, 4.0), "dkd": (1.0, 1.0, 20, 4.0), "ltkd": (1.0, 1.0, 20, 4.0)}
    rng = np.random.default_rng(0)
    logits = [jnp.asarray(rng.normal(size=(8, 10)), jnp.float32) for _ in range(2)]
    labels = jnp.asarray(rng.integers(0, 10, 8), jnp.int32)
    for method, weights in expected.items():
        stage = bench.make_stage(method, student, 3, data)
        objective = stage.objective
        assert (stage.name, stage.model, stage.num_epochs, stage.learning_rate) == (method, student, 3, 0.05)
        assert (objective.ce_weight, objective.distill_weight, objective.warmup_epochs,
                objective.log_temperature) == weights, method
        assert stage.feature_loss is None, method
        assert np.isfinite(float(jax.jit(stage.distill_loss)(*logits, labels))), method


def test_static_feed_normalises_the_uint8_batch():
    """The `jax step` row's feed holds a uint8 batch and normalises it inside the step, as the host feed does."""
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    from ltkd_jax.data import device  # pylint: disable=import-outside-toplevel

    augmentation = device.Augmentation(pad=4, flip=True, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3))
    rng = np.random.default_rng(0)
    raw = {"image": jnp.asarray(rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)),
           "label": jnp.arange(4, dtype=jnp.int32)}
    feed = bench.StaticFeed(raw, augmentation)
    batch = feed.batch(feed.inputs(0), 0)
    assert sorted(batch) == ["image", "label"] and batch["image"].dtype == jnp.float32
    np.testing.assert_array_equal(batch["image"], device.normalize(raw["image"], augmentation.mean,
                                                                         augmentation.std))
    np.testing.assert_array_equal(batch["label"], raw["label"])


def test_bench_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        bench.main(TINY + ["--teacher=resnet9"])
    assert "unknown model 'resnet9'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(TINY + ["--batch_size=0"])
    assert "--batch_size=0 must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--num_classes=0", "--channels=0", "--image_size=0", "--num_train=0", "--steps=0",
                                  "--windows=0", "--epoch_examples=0", "--steps=-3"])
def test_bench_rejects_non_positive_sizes(capsys, flag):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(TINY + ["--epoch", flag])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{flag} must be >= 1 (a positive integer)" in err and "Traceback" not in err


def test_bench_rejects_a_batch_larger_than_the_data(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(TINY + ["--batch_size=1000", "--num_train=256"])
    assert exit_info.value.code == 2
    assert "--batch_size=1000 is larger than --num_train=256" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        bench.main(TINY + ["--batch_size=64", "--num_train=256", "--epoch", "--epoch_examples=32"])
    assert exit_info.value.code == 2
    assert "--batch_size=64 is larger than --epoch_examples=32" in capsys.readouterr().err
    # --step_only times one batch and never reads num_train: no check (parse only, nothing runs).
    assert bench.parse_args(TINY + ["--batch_size=1000", "--num_train=256", "--step_only"]).batch_size == 1000


def test_bench_rejects_an_unwritable_json_path(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(TINY + ["--json=/nonexistent_dir/x.json"])
    assert exit_info.value.code == 2
    assert "--json=/nonexistent_dir/x.json: directory /nonexistent_dir does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        bench.main(TINY + [f"--json={tmp_path}"])
    assert exit_info.value.code == 2
    assert "is a directory" in capsys.readouterr().err


def test_torch_reference_runs_when_installed():
    torch = pytest.importorskip("torch")
    from ltkd_jax.tools import torch_reference
    seconds = torch_reference.time_kd_step("demo_resnet_teacher", "demo_resnet_student", batch_size=8, image_size=16,
                                           channels=1, num_classes=10, steps=2, windows=1)
    assert seconds > 0
    net = torch_reference.CifarResNet("resnet8x4", 100)
    assert sum(p.numel() for p in net.parameters()) == 1_233_540  # mdistiller's count, as our Flax model
    del torch


def test_accelerator_path_runs_without_tensorflow(tmp_path):
    """The GPU machine has no TensorFlow or tfds (and maybe no tensorboard or matplotlib; ml_collections comes
    from a wheel, launch/gpu_bench.sh): the benchmark, an epoch through the trainer (checkpoint included) and a
    profile run with them absent; every row it prints is in the JSON with consistent rates."""
    import subprocess
    import sys
    out_json = tmp_path / "rows.json"
    args = TINY + ["--steps_per_dispatch=1,2", "--epoch", "--epoch_examples=320", f"--profile_dir={tmp_path / 'trace'}",
                   f"--json={out_json}"]
    code = (
        "import sys\n"
        "for name in ('tensorflow', 'tensorflow_datasets', 'tensorboard', 'matplotlib'):\n"
        "    sys.modules[name] = None  # as if not installed: imports fail, importlib.util.find_spec gives None\n"
        "from ltkd_jax.tools import bench\n"
        f"sys.exit(bench.main({args!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| jax step | 16 | float32 |" in out.stdout and "| jax end-to-end x2 | 16 |" in out.stdout
    assert "| jax end-to-end | 16 |" in out.stdout and "| jax 2 epochs" in out.stdout and "(640 images" in out.stdout
    rows = json.loads(out_json.read_text())["rows"]
    assert [r["name"] for r in rows[:3]] == ["jax step", "jax end-to-end", "jax end-to-end x2"]
    for row in rows[:3]:
        assert row["img_per_s"] > 0 and row["compile_s"] > 0
        assert row["ms_per_step"] == pytest.approx(1e3 * 16 / row["img_per_s"], rel=1e-6)
    # XLA's cost analysis: the distillation step costs at least the student's forward + backward.
    assert rows[0]["tflops"] > 0
    loop = [r for r in rows if "trainer loop" in r["name"]]
    assert len(loop) == 1 and loop[0]["img_per_s"] > 0 and 0 <= loop[0]["input_wait_fraction"] < 0.5
    assert list((tmp_path / "trace").rglob("*.xplane.pb"))


def test_step_only_times_the_bare_step(capsys, tmp_path):
    assert bench.main(TINY + ["--step_only", "--steps_per_dispatch=1,4", f"--profile_dir={tmp_path}"]) == 0
    printed = capsys.readouterr().out
    assert "| jax step | 16 |" in printed and "end-to-end" not in printed
    assert list(tmp_path.rglob("*.xplane.pb"))  # the profile traces the bare step then
    with pytest.raises(SystemExit):
        bench.main(TINY + ["--step_only", "--epoch"])
    assert "cannot go with --step_only" in capsys.readouterr().err


def test_a_profiler_that_cannot_start_costs_only_the_trace(capsys, tmp_path, monkeypatch):
    def no_profiler(*args, **kwargs):
        raise RuntimeError("CUPTI not found\nmore detail")

    monkeypatch.setattr(bench.jax.profiler, "trace", no_profiler)
    assert bench.main(TINY + [f"--profile_dir={tmp_path}"]) == 0
    captured = capsys.readouterr()
    assert "| jax end-to-end | 16 |" in captured.out
    assert f"bench: warning: no profile written to {tmp_path}: CUPTI not found" in captured.err


def test_bench_needs_three_classes_for_the_groups(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(TINY + ["--num_classes=2"])
    assert exit_info.value.code == 2
    assert "--num_classes=2 must be >= 3 (the head / medium / tail groups)" in capsys.readouterr().err


def test_peaks_bound_the_anchor_rates():
    """The fraction of peak must stay below 1 for rates measured on an H200 (the anchor of tools/cost.py, ~3.2 GFLOP
    per image): JAX's fp32 step ran at 24,417 img/s, i.e. on TF32 tensor cores (~78 TFLOP/s, above plain fp32's
    67), and its bf16 step at 85,210."""
    for dtype, img_per_s in (("float32", 24_417), ("bfloat16", 85_210)):
        peak = bench.device_peak(dtype, "NVIDIA H200")
        assert peak is not None and 0.05 < img_per_s * 3.2e9 / 1e12 / peak < 1
        assert peak <= bench.device_peak("bfloat16", "NVIDIA H200")  # TF32 runs at half bf16's rate or less
    assert bench.device_peak("float32", "NVIDIA H100 80GB HBM3") == bench.PEAK_TFLOPS["H100"][0]
    assert bench.device_peak("bfloat16", "NVIDIA H100 PCIe") == bench.PEAK_TFLOPS["H100 PCIe"][1]
    assert bench.device_peak("bfloat16", "NVIDIA A100-SXM4-80GB") == bench.PEAK_TFLOPS["A100"][1]
    assert bench.device_peak("bfloat16", "TPU v5 lite") == bench.PEAK_TFLOPS["TPU v5 lite"][1]
    assert bench.device_peak("bfloat16", "TPU v5p") == bench.PEAK_TFLOPS["TPU v5p"][1]
    for unknown in ("NVIDIA L40S", "cpu"):
        assert bench.device_peak("bfloat16", unknown) is None
