import sys

from ltkd_jax.data.prepare import main

sys.exit(main())
