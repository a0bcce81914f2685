"""Checkpointer: last-N and best sets, asynchronous writes that a restore and a reopen see complete."""
import jax
import jax.numpy as jnp
import numpy as np

from ltkd_jax.train import checkpoint


def _state(value):
    return {"params": {"w": jnp.full((64, 64), value, jnp.float32)}, "step": jnp.asarray(int(value), jnp.int32)}


def _abstract():
    return jax.eval_shape(lambda: _state(0))


def test_best_written_only_on_improvement_and_reopened(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2)
    best_writes = []
    save_best = ckpt.best.save
    ckpt.best.save = lambda step, **kw: (best_writes.append(step), save_best(step, **kw))[1]
    for step, accuracy in [(1, 10.0), (2, 30.0), (3, 20.0), (4, 30.0), (5, 50.0), (6, None)]:
        ckpt.save(step, _state(step), accuracy=accuracy)
    assert best_writes == [1, 2, 5]  # 3 is worse, 4 only ties, 6 has no accuracy
    ckpt.close()
    reopened = checkpoint.Checkpointer(str(tmp_path), keep=2)
    assert reopened.best_accuracy == 50.0 and reopened.best.all_steps() == [5]
    assert sorted(reopened.latest.all_steps()) == [5, 6]
    restored = reopened.restore_latest(_abstract())
    np.testing.assert_array_equal(np.asarray(restored["params"]["w"]), np.full((64, 64), 6.0, np.float32))
    reopened.save(7, _state(7), accuracy=40.0)  # below the reopened best: best stays at 5
    reopened.close()
    assert checkpoint.Checkpointer(str(tmp_path)).best.all_steps() == [5]


def test_restore_right_after_an_async_save_sees_it(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path), keep=3)
    ckpt.save(1, _state(1))
    ckpt.save(2, _state(2))
    restored = ckpt.restore_latest(_abstract())  # no close() in between: the restore waits for the write
    assert int(restored["step"]) == 2
    ckpt.close()


def test_restore_errors_stay_one_line():
    """A failed orbax read: the message loses tensorstore's spec dump and stays short."""
    spec_dump = Exception("Encountered error while reading array index: (slice(0, 96, 1),). See full TensorStore "
                          "details: <bound method spec of TensorStore({\n 'driver': 'zarr'})>")
    assert checkpoint._first_line(spec_dump) == (  # pylint: disable=protected-access
        "Exception: Encountered error while reading array index: (slice(0, 96, 1),).")
    long_message = checkpoint._first_line(ValueError("x" * 500))  # pylint: disable=protected-access
    assert long_message.endswith(" " + "x" * 200 + "...")
