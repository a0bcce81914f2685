"""A teacher, then an LTKD student distilled from it, on the synthetic data (`python fault_run.py WORKDIR`), that
kills itself with SIGKILL (no clean-up at all) where $FAULT says: `POINT:STAGE:N` with STAGE `teacher` or
`student` and POINT
  step     once the training record of step >= N is logged (mid-training, between checkpoints);
  writing  inside the N-th checkpoint save's commit, after its files were written in the background, before the
           step directory is renamed into place (an asynchronous save being written);
  saved    after the N-th save is complete, before its checksums are recorded.
Without $FAULT it runs to the end: rerunning the same command after a kill resumes. test_faults.py runs it."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # synthetic.py

from orbax.checkpoint._src.path import atomicity  # noqa: E402

from ltkd_jax import losses, train  # noqa: E402
from ltkd_jax.train import checkpoint, metrics  # noqa: E402
import synthetic  # noqa: E402


def _kill():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def inject(fault: str, workdir: str) -> None:
    """Patch this process so that it dies where `fault` says (module docstring)."""
    point, stage_name, count = fault.split(":")
    count, seen = int(count), []

    def ours(path) -> bool:
        return os.path.join(workdir, stage_name) + os.sep in os.fspath(path) + os.sep

    if point == "step":
        log_write = metrics.MetricsLog.write

        def write_then_kill(self, record):
            log_write(self, record)
            if ours(self.path) and record["split"] == "train" and record["step"] >= count:
                _kill()
        metrics.MetricsLog.write = write_then_kill
    elif point == "writing":
        finalize = atomicity.AtomicRenameTemporaryPath.finalize

        async def kill_before_commit(self):
            if ours(self.get_final()) and self.get_final().parent.name == "checkpoints":  # a step, not an item
                seen.append(1)
                if len(seen) == count:
                    _kill()
            return await finalize(self)
        atomicity.AtomicRenameTemporaryPath.finalize = kill_before_commit
    elif point == "saved":
        write_checksums = checkpoint.write_checksums

        def kill_before_checksums(step_dir):
            if ours(step_dir) and step_dir.parent.name == "checkpoints":
                seen.append(1)
                if len(seen) == count:
                    _kill()
            write_checksums(step_dir)
        checkpoint.write_checksums = kill_before_checksums
    else:
        raise ValueError(f"unknown fault point {point!r}")


def run(workdir: str) -> None:
    """The teacher, then the student: the command a fault interrupts (also the tests' uninterrupted reference)."""
    data = synthetic.make_data()
    train.run_stage(train.Stage("teacher", synthetic.TinyNet(), 0.05, 3, 0), data, f"{workdir}/teacher",
                    **synthetic.RECIPE)
    teacher = train.load_teacher(synthetic.TinyNet(), f"{workdir}/teacher", (8, 8, 1))
    stage = train.Stage("ltkd", synthetic.TinyNet(), 0.05, 3, 1,
                        distill_loss=losses.get_distill_loss("ltkd", group_ids=synthetic.GROUP_IDS, alpha=1.0,
                                                             beta=1.0, temperature=4.0),
                        objective=train.Objective(warmup_epochs=1, log_temperature=4.0))
    train.run_stage(stage, data, f"{workdir}/student", teacher=teacher, **synthetic.RECIPE)


if __name__ == "__main__":
    if os.environ.get("FAULT"):
        inject(os.environ["FAULT"], sys.argv[1])
    run(sys.argv[1])
