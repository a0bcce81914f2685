"""Checkpointer: last-N and best sets, asynchronous writes that a restore and a reopen see complete."""
import io
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltkd_jax import checkpointing


def _state(value):
    return {"params": {"w": jnp.full((64, 64), value, jnp.float32)}, "step": jnp.asarray(int(value), jnp.int32)}


def _abstract():
    return jax.eval_shape(lambda: _state(0))


def test_best_written_only_on_improvement_and_reopened(tmp_path):
    ckpt = checkpointing.Checkpointer(str(tmp_path), keep=2)
    best_writes = []
    save_best = ckpt.best.save
    ckpt.best.save = lambda step, **kw: (best_writes.append(step), save_best(step, **kw))[1]
    for step, accuracy in [(1, 10.0), (2, 30.0), (3, 20.0), (4, 30.0), (5, 50.0), (6, None)]:
        ckpt.save(step, _state(step), accuracy=accuracy)
    assert best_writes == [1, 2, 5]  # 3 is worse, 4 only ties, 6 has no accuracy
    ckpt.close()
    reopened = checkpointing.Checkpointer(str(tmp_path), keep=2)
    assert reopened.best_accuracy == 50.0 and reopened.best.all_steps() == [5]
    assert sorted(reopened.latest.all_steps()) == [5, 6]
    restored = reopened.restore_latest(_abstract())
    np.testing.assert_array_equal(np.asarray(restored["params"]["w"]), np.full((64, 64), 6.0, np.float32))
    reopened.save(7, _state(7), accuracy=40.0)  # below the reopened best: best stays at 5
    reopened.close()
    assert checkpointing.Checkpointer(str(tmp_path)).best.all_steps() == [5]


def test_restore_right_after_an_async_save_sees_it(tmp_path):
    ckpt = checkpointing.Checkpointer(str(tmp_path), keep=3)
    ckpt.save(1, _state(1))
    ckpt.save(2, _state(2))
    restored = ckpt.restore_latest(_abstract())  # no close() in between: the restore waits for the write
    assert int(restored["step"]) == 2
    ckpt.close()


def test_restore_errors_stay_one_line():
    """A failed orbax read: the message loses tensorstore's spec dump, and the tracebacks its orphaned reads
    print from other threads are dropped while other stderr output passes."""
    spec_dump = Exception("Encountered error while reading array index: (slice(0, 96, 1),). See full TensorStore "
                          "details: <bound method spec of TensorStore({\n 'driver': 'zarr'})>")
    assert checkpointing._first_line(spec_dump) == (  # pylint: disable=protected-access
        "Exception: Encountered error while reading array index: (slice(0, 96, 1),).")
    long_message = checkpointing._first_line(ValueError("x" * 500))  # pylint: disable=protected-access
    assert long_message.endswith(" " + "x" * 200 + "...")

    captured = io.StringIO()
    stream = checkpointing._WithoutLoopClosedTracebacks(captured)  # pylint: disable=protected-access
    noise = ("Traceback (most recent call last):\n"
             '  File "/usr/lib/python3.11/asyncio/base_events.py", line 806, in call_soon_threadsafe\n'
             "    self._check_closed()\n"
             '  File "/usr/lib/python3.11/asyncio/base_events.py", line 519, in _check_closed\n'
             "    raise RuntimeError('Event loop is closed')\n"
             "RuntimeError: Event loop is closed\n")
    real = ('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n    f()\n'
            "KeyError: 'a real error'\n")
    stream.write(noise[:40])
    stream.write(noise[40:] + "error: teacher checkpoint x is unreadable or corrupted (y)\n" + noise)
    noise_lines = noise.splitlines(keepends=True)
    stray = "".join(noise_lines[1:3])  # pieces of another thread's traceback
    cut_off = "".join(noise_lines[:3])  # a noise traceback that a line of other output interrupts
    stream.write(real + stray + cut_off + "a warning\n")
    stream.write("progress 50%")
    stream.flush()
    assert captured.getvalue() == ("error: teacher checkpoint x is unreadable or corrupted (y)\n" + real
                                   + "a warning\nprogress 50%")
    stream.write("\n" + noise[:60])
    assert stream.release() is captured and captured.getvalue().endswith("progress 50%\n" + noise[:60])
    # A read that failed while another thread's closed-loop traceback was coming in: its lines are not passed on
    # (the CLI's one error line follows); a real traceback held at that moment still is.
    for held, passed in (("".join(noise_lines[:2]), ""), (real[:real.index("    f()")], real[:real.index("    f()")])):
        captured = io.StringIO()
        stream = checkpointing._WithoutLoopClosedTracebacks(captured)  # pylint: disable=protected-access
        stream.write(held)
        assert stream.release(failed_read=True) is captured and captured.getvalue() == passed


def test_a_restore_filters_stderr_only_while_it_reads(tmp_path, monkeypatch):
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    with checkpointing._reading("checkpoint", str(tmp_path)):  # pylint: disable=protected-access
        assert isinstance(sys.stderr, checkpointing._WithoutLoopClosedTracebacks)  # pylint: disable=protected-access
        sys.stderr.write("half a line")
    assert sys.stderr is stderr and stderr.getvalue() == "half a line"
    with pytest.raises(checkpointing.CheckpointError, match=r"checkpoint .* is unreadable or corrupted \(OSError: bad"):
        with checkpointing._reading("checkpoint", str(tmp_path)):  # pylint: disable=protected-access
            raise OSError("bad")
    assert sys.stderr is stderr  # a library caller's stderr is its own again; the CLI quiets what follows:
    hook = sys.unraisablehook
    monkeypatch.setattr(sys, "unraisablehook", hook)
    checkpointing.quiet_failed_reads()
    assert sys.stderr.stream is stderr and sys.unraisablehook.previous is hook
