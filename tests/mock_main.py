"""`python -m ltkd_jax.main` with tfds's mock data sets (320 examples per split, or $MOCK_NUM_EXAMPLES), so that
multi-process tests can start the real command line in fresh processes: `LTKD_MAIN=mock_main launch/local.sh 2
-- ...` with `tests/` on PYTHONPATH."""
import os

import tensorflow_datasets as tfds
from absl import app

from ltkd_jax import main as ltkd_main

NUM_EXAMPLES = int(os.environ.get("MOCK_NUM_EXAMPLES", 320))


def main(argv):
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
        ltkd_main.main(argv)


if __name__ == "__main__":
    app.run(main)
