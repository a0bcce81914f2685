"""Run a teacher and an LTKD student on the synthetic data; print the final test record as JSON, and whether
training imported TensorFlow (it needs none: its data are arrays, its TensorBoard events written without it).

Used by test_trainer.py in a subprocess with 1 or 8 simulated CPU devices (XLA_FLAGS must be set before JAX
starts)."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # synthetic.py

import jax  # noqa: E402

from ltkd_jax import losses, train  # noqa: E402
import synthetic  # noqa: E402

workdir = sys.argv[1]
data = synthetic.make_data()
train.run_stage(train.Stage("teacher", synthetic.TinyNet(), 0.05, 2, 0), data, f"{workdir}/teacher",
                  **synthetic.RECIPE)
teacher = train.load_teacher(synthetic.TinyNet(), f"{workdir}/teacher", (8, 8, 1))
stage = train.Stage("ltkd", synthetic.TinyNet(), 0.05, 2, 1,
                    distill_loss=losses.get_distill_loss("ltkd", group_ids=synthetic.GROUP_IDS, alpha=1.0, beta=1.0,
                                                         temperature=4.0),
                    objective=train.Objective(warmup_epochs=1, log_temperature=4.0))
train.run_stage(stage, data, f"{workdir}/student", teacher=teacher, **synthetic.RECIPE)
records = train.read_metrics(f"{workdir}/student/metrics.jsonl")
print(json.dumps({"devices": jax.device_count(), "tensorflow_imported": "tensorflow" in sys.modules,
                  "train": [r for r in records if r["split"] == "train"][-1],
                  "test": [r for r in records if r["split"] == "test"][-1]}))
