"""Command-line tools: `python -m ltkd_jax.tools.<name>` (report, sweep, diagnose, bench, ...)."""
