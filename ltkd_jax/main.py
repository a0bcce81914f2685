"""`python -m ltkd_jax.main --config=configs/cifar100_lt.py:ltkd,resnet32x4-resnet8x4,100 --workdir=DIR`.

Intentionally thin: the experiment (teacher, then student, then report) is `experiment.run`. A mistake in the
flags, the config file or the config ends in one line: the exception's own first line.
"""

import os
import re
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from ltkd_jax.io import error_line

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py:method,teacher-student,gamma).",
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
        sys.stderr.write(f"error: {_unknown_field(error) or error_line(error)}\n")
        sys.exit(2)


def _unknown_field(error: Exception):
    """ml_collections' text for an override of a field the config lacks: KeyErrors inside an AttributeError,
    the innermost naming the field, one of them suggesting a near name."""
    chain = [error]
    while chain[-1].__cause__ or chain[-1].__context__:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    if not (isinstance(error, (AttributeError, KeyError)) and isinstance(chain[-1], KeyError) and chain[-1].args):
        return None
    hint = next((m.group(0) for m in (re.search(r'Did you mean "[^"]+" instead of "[^"]+"\?', str(e)) for e in chain)
                 if m), "")
    return f"no such config field: {chain[-1].args[0]}" + (f"; {hint}" if hint else "")


def _initialize_distributed(jax) -> None:
    """A cluster that cannot be joined (no coordinator at the address, a time-out) is the user's setting."""
    try:
        jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                                   num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
    except RuntimeError as error:
        raise ValueError(f"jax.distributed.initialize failed: {error_line(error)}") from error


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
        sys.stderr.write(f"error: {error_line(error)}\n")
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
