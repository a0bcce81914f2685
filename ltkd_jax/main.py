"""Command line: `python -m ltkd_jax.main --config=configs/cifar100_lt.py:ltkd,resnet32x4-resnet8x4,100
--workdir=DIR`. Without --config it runs the embedded demo (Fashion-MNIST-LT, CPU-sized)."""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from ltkd_jax import paper_results  # light: no JAX; the known config files

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics.jsonl, report.md).")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (set automatically by our launchers; "
                  "on TPU VMs and SLURM the cluster is detected from the environment).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process without a cluster).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process without a cluster).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-process without a cluster).")


def _usage_error(message: str) -> None:
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.exit(2)


def parse_flags(argv):
    """absl's flag parsing with one-line errors: a missing or broken config file, an unknown config field or a
    value of the wrong type would otherwise end in ml_collections' traceback."""
    args = argv[1:argv.index("--")] if "--" in argv else argv[1:]  # after '--': not flags
    for arg, following in zip(args, args[1:] + [None]):
        name, _, value = arg.lstrip("-").partition("=")
        if not (arg.startswith("-") and name == "config"):
            continue
        value = value if "=" in arg else following  # `--config PATH`: the next word, unless it is a flag
        if value and not value.startswith("-"):
            path = value.split(":", 1)[0]
            if not os.path.isfile(path):
                known = ", ".join(sorted(paper_results.CONFIG_FILES.values()))
                _usage_error(f"--config file {path!r} does not exist (known: {known})")
    try:
        return FLAGS(argv)
    except flags.Error as error:  # a value that does not parse, or an unknown flag
        _usage_error(str(error))
    except (AttributeError, KeyError) as error:  # ml_collections: an unknown --config.FIELD (or group)
        text = str(error.args[0] if error.args else error)
        text = text.replace("\\n", " ").replace("\\", "").replace("'", "").strip('"')
        name = text.split()[0] if text else ""
        override = next((a.split("=", 1)[0] for a in argv[1:]
                         if a.startswith("--config.") and name in a.split("=", 1)[0].split(".")[1:]), None)
        if override:
            _usage_error(f"{override}: no such config field ({text})")
        _usage_error(f"--config could not be loaded: {type(error).__name__}: {text}")
    except Exception as error:  # pylint: disable=broad-except  # a config file that does not load
        _usage_error(f"--config could not be loaded: {type(error).__name__}: {error}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.set_verbosity(logging.WARNING)  # orbax and tfds log every checkpoint and read at INFO
    import jax  # pylint: disable=import-outside-toplevel

    from ltkd_jax.data import _env  # pylint: disable=import-outside-toplevel

    if (FLAGS.num_processes is not None or FLAGS.process_id is not None) and not (
            FLAGS.distributed or FLAGS.coordinator_address):
        _usage_error("--num_processes / --process_id need --coordinator_address (or --distributed on a cluster)")
    if FLAGS.coordinator_address:
        host, _, port = FLAGS.coordinator_address.rpartition(":")
        if not (host and port.isdigit()):
            _usage_error(f"--coordinator_address={FLAGS.coordinator_address!r} must be HOST:PORT (e.g. 10.0.0.1:1234)")
    if FLAGS.distributed or FLAGS.coordinator_address:
        try:
            jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                                       num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
        except Exception as error:  # pylint: disable=broad-except  # no cluster to detect, a bad process id, ...
            reason = _env.first_line(error)
            _usage_error(f"jax.distributed.initialize failed: {reason} (on a TPU VM "
                         "or under SLURM --distributed finds the cluster; elsewhere give --coordinator_address, "
                         "--num_processes and --process_id)")
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
        if isinstance(error, checkpointing.CheckpointError):
            checkpointing.exit_after_failed_read(f"\nerror: {error}\n", 1)
        sys.stderr.write(f"\nerror: {error}\n")
        sys.exit(143 if isinstance(error, trainer.Preempted) else 1)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
