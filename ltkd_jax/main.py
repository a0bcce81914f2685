"""Command line: `python -m ltkd_jax.main --config=configs/cifar100_lt.py:ltkd,resnet32x4-resnet8x4,100
--workdir=DIR`. Without --config it runs the embedded demo (Fashion-MNIST-LT, CPU-sized)."""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics.jsonl, report.md).")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (set automatically by our launchers; "
                  "on TPU VMs and SLURM the cluster is detected from the environment).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process without a cluster).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process without a cluster).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-process without a cluster).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.set_verbosity(logging.WARNING)  # orbax and tfds log every checkpoint and read at INFO
    import jax  # pylint: disable=import-outside-toplevel

    if FLAGS.distributed or FLAGS.coordinator_address:
        jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                                   num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
    from ltkd_jax import checkpointing, demo, experiment, trainer  # pylint: disable=import-outside-toplevel

    known_errors = (ValueError, FileNotFoundError, checkpointing.CheckpointError, trainer.NonFiniteLoss,
                    trainer.Preempted)
    try:
        if FLAGS.config is None:
            demo.run_demo(FLAGS.workdir or "workdirs/demo")
        else:
            if not FLAGS.workdir:
                raise ValueError("--workdir is required with --config")
            experiment.run(FLAGS.config, FLAGS.workdir)
    except known_errors as error:
        sys.stderr.write(f"\nerror: {error}\n")
        sys.exit(143 if isinstance(error, trainer.Preempted) else 1)


if __name__ == "__main__":
    app.run(main)
