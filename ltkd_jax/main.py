"""`python -m ltkd_jax.main --config=configs/cifar100_lt.py:ltkd,resnet32x4-resnet8x4,100 --workdir=DIR`.

Intentionally thin: the experiment (teacher, then student, then report) is `experiment.run`. A mistake in the
flags or the config file ends in one line, `error: <type>: <first line>` of the error at the root of the chain the
flag libraries raise; a mistake in the config, or a fault of the run, in `error: <first line>` of our own error.
"""

import os
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from ltkd_jax.io import first_line, root_cause

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py:method,teacher-student[,gamma]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics.jsonl, report.md).")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (on TPU VMs and under SLURM the cluster "
                  "is found from the environment; our launchers set this).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (several processes without a cluster).")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv):
    try:
        remaining = FLAGS(argv)
        FLAGS.config.get("method")  # a config file that failed to load raises here
        return remaining
    except Exception as error:  # pylint: disable=broad-except  # absl's, ml_collections' or the config file's
        root = root_cause(error)  # absl and ml_collections wrap the config file's own error: that one, named
        sys.stderr.write(f"error: {type(root).__name__}: {first_line(root)}\n")
        sys.exit(2)


def _initialize_distributed(jax) -> None:
    """A cluster that cannot be joined (no coordinator at the address, a time-out) is the user's setting."""
    try:
        jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                                   num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
    except RuntimeError as error:
        raise ValueError(f"jax.distributed.initialize failed: {first_line(error)}") from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax and tfds log every checkpoint and read at INFO
    import jax  # pylint: disable=import-outside-toplevel  # after the flags: --help stays fast

    from ltkd_jax import experiment, train  # pylint: disable=import-outside-toplevel

    try:
        if FLAGS.distributed or FLAGS.coordinator_address:
            _initialize_distributed(jax)
        else:  # one process: every core of a CPU host
            train.use_every_cpu_core(FLAGS.config.batch_size, FLAGS.config.eval_batch_size or FLAGS.config.batch_size)
        experiment.run(FLAGS.config, FLAGS.workdir)
    except (ValueError, OSError, FloatingPointError, train.Preempted) as error:  # a bug's error keeps its traceback
        sys.stderr.write(f"error: {first_line(error)}\n")
        _leave(jax, 143 if isinstance(error, train.Preempted) else 1)
    except Exception:  # pylint: disable=broad-except
        if jax.process_count() == 1:
            raise
        traceback.print_exc()
        _leave(jax, 1)


def _leave(jax, status: int) -> None:
    """Exit with `status`. A failed run of several processes leaves at once: jax.distributed's shutdown at exit
    waits for every process, and after a failure one may be dead (the wait would last its heartbeat time-out,
    100 s, then abort) or still stepping (then its collective never completes). The loop closed every file."""
    if jax.process_count() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)  # pylint: disable=protected-access
    sys.exit(status)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
