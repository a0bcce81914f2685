"""`python -m ltkd_jax.main` with tfds's mock data sets (320 examples per split, or $MOCK_NUM_EXAMPLES), so that
multi-process tests can start the real command line in fresh processes: `LTKD_MAIN=mock_main launch/local.sh 2
-- ...` with `tests/` on PYTHONPATH. `MOCK_DIE_AT=P:S`: process P dies by SIGKILL once its training logs step S."""
import os
import signal

import jax
import tensorflow_datasets as tfds
from absl import app

from ltkd_jax import main as ltkd_main
from ltkd_jax.train import metrics

NUM_EXAMPLES = int(os.environ.get("MOCK_NUM_EXAMPLES", 320))


def _die_at(process: int, step: int) -> None:
    write = metrics.MetricsLog.write  # every process calls it (only process 0 writes)

    def write_or_die(self, record):
        write(self, record)
        if jax.process_index() == process and record["split"] == "train" and record["step"] >= step:
            os.kill(os.getpid(), signal.SIGKILL)
    metrics.MetricsLog.write = write_or_die


def main(argv):
    if os.environ.get("MOCK_DIE_AT"):
        _die_at(*map(int, os.environ["MOCK_DIE_AT"].split(":")))
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
        ltkd_main.main(argv)


if __name__ == "__main__":
    app.run(main)
