"""Two XLA CPU devices in one process: a host that queues more than ~32 programs of a collective step ahead of the
devices deadlocks XLA's CPU client, which aborts the process (docs/benchmarks.md, "The two-device abort"); with
`InFlight` bounding the queue, as every loop of the package does, the same program finishes. XLA's 40 s time-out is
shortened to 5 s here so that the control (the unbounded queue) fails fast."""
import signal
import subprocess
import sys
import textwrap

import synthetic


PROGRAM = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from ltkd_jax.train.dispatch import InFlight

    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    replicated, batch = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

    def step(w, x):  # a batch mean: an all-reduce over the two devices
        g = jnp.mean(jnp.tanh(jax.lax.with_sharding_constraint(x, batch) @ w), 0)
        return w - 1e-3 * jnp.outer(g, g), jnp.sum(g)

    step = jax.jit(step, donate_argnums=0, out_shardings=replicated)
    w, x = jax.device_put(jnp.eye(256), replicated), jax.device_put(jnp.ones((64, 256)), batch)
    in_flight, outputs = InFlight() if sys.argv[1] == "bounded" else None, []
    for _ in range(300):
        w, out = step(w, x)
        if in_flight is None:
            outputs.append(out)  # the host runs ahead: nothing waits for the devices
        else:
            in_flight.add(out)
    jax.block_until_ready((w, outputs))
    print("finished")
""")


def _run(mode):
    env = synthetic.xla_env(2, "--xla_cpu_collective_call_terminate_timeout_seconds=5",
                            "--xla_cpu_collective_call_warn_stuck_timeout_seconds=2")
    return subprocess.run([sys.executable, "-c", PROGRAM, mode], env=env, capture_output=True, text=True,
                          timeout=180)


def test_a_bounded_queue_of_collective_steps_finishes():
    out = _run("bounded")
    assert out.returncode == 0 and "finished" in out.stdout, out.stderr[-2000:]


def test_control_an_unbounded_queue_aborts():
    """The deadlock is real in this XLA, so the bounded run shows that the bound prevents it. It aborted in 11 of
    12 single runs here: up to three runs."""
    returncodes = []
    for _ in range(3):
        returncodes.append(_run("unbounded").returncode)
        if returncodes[-1] == -signal.SIGABRT:
            break
    assert returncodes[-1] == -signal.SIGABRT, returncodes
