"""A population trains each member as its solo run would: same parameters after its 20 steps (exactly when
members step one after another, to float tolerance when vmapped), the same metrics.jsonl fields, and a
SIGTERM'd population resumes to the same end. Its config grammar names a member that cannot join in one line."""
import contextlib
import os
import signal

import jax
import numpy as np
import pytest

from ltkd_jax import losses, recipes, train
from ltkd_jax.train import loop, population
import synthetic

NUM_EPOCHS = 2  # 10 steps per epoch at batch 16


def _stage(name, model=None, distill_loss=None, **objective):
    return train.Stage(name, model or synthetic.TinyNet(), 0.05, NUM_EPOCHS, 1, distill_loss=distill_loss,
                       objective=train.Objective(**objective))


def _loss(name, **hparams):
    return losses.get_distill_loss(name, group_ids=synthetic.GROUP_IDS, class_counts=synthetic.COUNTS, **hparams)


def _stages():
    """A CE student, KD, LTKD, DKD and BKD on one architecture, and LTKD on a wider one."""
    return [
        _stage("student"),
        _stage("kd", distill_loss=_loss("kd", temperature=4.0), ce_weight=0.1, distill_weight=0.9,
               log_temperature=4.0),
        _stage("ltkd", distill_loss=_loss("ltkd", alpha=1.0, beta=1.0, temperature=4.0), warmup_epochs=2,
               log_temperature=4.0),
        _stage("dkd", distill_loss=_loss("dkd", alpha=1.0, beta=8.0, temperature=2.0), warmup_epochs=1,
               log_temperature=2.0),
        _stage("ltkd_wide", model=synthetic.TinyNet(width=12),
               distill_loss=_loss("ltkd", alpha=2.0, beta=8.0, temperature=4.0), log_temperature=4.0),
        # BKD's class counts are bound host constants, also inside the vmapped group's switch; its class weights
        # start in epoch 2 (the loss reads the epoch, the others do not).
        _stage("bkd", distill_loss=_loss("bkd", temperature=2.0, reweight_epoch=1), log_temperature=2.0),
    ]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("teacher"))
    train.run_stage(train.Stage("teacher", synthetic.TinyNet(), 0.05, 2, 0), synthetic.make_data(), workdir,
                    **synthetic.RECIPE)
    return train.load_teacher(synthetic.TinyNet(), workdir, (8, 8, 1))


@pytest.fixture(scope="module")
def solo_runs(teacher, tmp_path_factory):
    root = tmp_path_factory.mktemp("solo")
    runs = {}
    for stage in _stages():
        state = train.run_stage(stage, synthetic.make_data(), str(root / stage.name), teacher=teacher,
                                **synthetic.RECIPE)
        runs[stage.name] = (state, train.read_metrics(str(root / stage.name / "metrics.jsonl")))
    return runs


def _leaves(state):
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(state.variables)]


def _run(stages, root, teacher, **options):
    return train.run_population(stages, synthetic.make_data(), [str(root / s.name) for s in stages],
                                teacher=teacher, **synthetic.RECIPE, **options)


def test_units_group_logit_members_of_one_architecture():
    assert population.units(_stages(), batched=True) == ((0,), (1, 2, 3, 5), (4,))
    assert population.units(_stages(), batched=False) == ((0,), (1,), (2,), (3,), (4,), (5,))


_COMPILED = []  # the names of the programs built inside `compiled_programs()` blocks


def _on_duration(event, seconds, fun_name=None, **kwargs):
    del seconds, kwargs
    if _COMPILED and event == "/jax/core/compile/backend_compile_duration":
        _COMPILED[-1].append(fun_name)


jax.monitoring.register_event_duration_secs_listener(_on_duration)


@contextlib.contextmanager
def compiled_programs():
    """The names of the programs JAX builds for XLA inside the block (compiled, or read from the compilation
    cache), from jax.monitoring's backend-compile events."""
    _COMPILED.append([])
    try:
        yield _COMPILED[-1]
    finally:
        _COMPILED.pop()


@pytest.mark.parametrize("batched", [False, True], ids=["one_after_another", "vmapped"])
def test_members_end_as_their_solo_runs(batched, teacher, solo_runs, tmp_path):
    stages = _stages()
    with compiled_programs() as compiled:
        states = _run(stages, tmp_path, teacher, batched=batched)
    # Members of one architecture and learning rate share one initialisation program: two architectures here.
    assert compiled.count("jit(init_state)") == 2, compiled
    for stage, state in zip(stages, states):
        solo_state, solo_records = solo_runs[stage.name]
        assert int(state.step) == int(solo_state.step) == 10 * NUM_EPOCHS
        for ours, theirs in zip(_leaves(state), _leaves(solo_state)):
            if batched:
                np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5, err_msg=stage.name)
            else:
                np.testing.assert_array_equal(ours, theirs, err_msg=stage.name)
        records = train.read_metrics(str(tmp_path / stage.name / "metrics.jsonl"))
        assert [(r["split"], r["step"], sorted(r)) for r in records] == [
            (r["split"], r["step"], sorted(r)) for r in solo_records]
        assert records[-1]["accuracy"] == pytest.approx(solo_records[-1]["accuracy"], abs=1e-9 if not batched else 5.0)
        # Its checkpoints are those of a solo run: it loads as a teacher would.
        restored = train.load_teacher(stage.model, str(tmp_path / stage.name), (8, 8, 1))
        for ours, theirs in zip(jax.tree_util.tree_leaves(restored.variables), _leaves(state)):
            np.testing.assert_array_equal(np.asarray(ours), theirs)


def test_a_sigterm_population_resumes_to_the_same_end(teacher, tmp_path, monkeypatch):
    stages = _stages()[1:4]  # one vmapped group (the default on accelerators)
    reference = _run(stages, tmp_path / "full", teacher, batched=True)
    original, calls = loop._log_train, []

    def log_then_signal(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2 * len(stages):  # after the second log window of every member
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(loop, "_log_train", log_then_signal)
    with pytest.raises(train.Preempted, match="SIGTERM: saved step 8"):
        _run(stages, tmp_path / "killed", teacher, batched=True)
    for stage in stages:  # every member saved the step it stopped at
        assert sorted(os.listdir(tmp_path / "killed" / stage.name / "checkpoints")) == ["8"]
    monkeypatch.setattr(loop, "_log_train", original)
    resumed = _run(stages, tmp_path / "killed", teacher, batched=True)
    for stage, ours, theirs in zip(stages, resumed, reference):
        for a, b in zip(_leaves(ours), _leaves(theirs)):
            np.testing.assert_array_equal(a, b, err_msg=stage.name)
    # One member's latest checkpoint damaged: the whole population goes back to the step before, to the same end.
    step_dir = tmp_path / "killed" / stages[0].name / "checkpoints" / "20"
    array_file = synthetic.largest_array_file(step_dir)
    array_file.write_bytes(array_file.read_bytes()[:-1] + bytes([array_file.read_bytes()[-1] ^ 1]))
    again = _run(stages, tmp_path / "killed", teacher, batched=True)
    for stage, ours, theirs in zip(stages, again, reference):
        for a, b in zip(_leaves(ours), _leaves(theirs)):
            np.testing.assert_array_equal(a, b, err_msg=stage.name)


def test_members_at_different_steps_are_one_error(teacher, tmp_path):
    stages = _stages()[1:3]
    train.run_stage(train.Stage("kd", synthetic.TinyNet(), 0.05, 1, 1, distill_loss=stages[0].distill_loss),
                    synthetic.make_data(), str(tmp_path / "kd"), teacher=teacher, **synthetic.RECIPE)
    with pytest.raises(ValueError, match=r"^the members of a population resume from different steps \(kd at 10, "
                                         r"ltkd at 0\); train them separately$"):
        _run(stages, tmp_path, teacher)


def _population(text, arg="kd,demo_resnet_teacher-demo_resnet_student,100", **fields):
    config = recipes.build_config("fashion_mnist", arg)
    config.update_from_flattened_dict(fields)
    config.population = text
    return recipes.population_members(config)


def test_members_have_their_methods_defaults_and_the_populations_fields():
    members = dict(_population("student,kd,dkd,ltkd:distill.alpha=2:distill.beta=8:learning_rate=0.1",
                               num_epochs=3, **{"distill.temperature": 2.0}))
    assert list(members) == ["student", "kd", "dkd", "ltkd_alpha2_beta8_learning_rate0.1"]
    student, kd, dkd, ltkd = members.values()
    assert {m.num_epochs for m in members.values()} == {3} and {m.population for m in members.values()} == {""}
    assert (student.method, dict(student.distill), student.ce_weight) == ("student", {}, 1.0)
    assert (kd.ce_weight, kd.distill_weight, dict(kd.distill)) == (0.1, 0.9, {"temperature": 2.0})
    assert dict(dkd.distill) == {"alpha": 1.0, "beta": 8.0, "temperature": 2.0}  # the pair's DKD beta
    assert (dict(ltkd.distill), ltkd.learning_rate, ltkd.warmup_epochs) == (
        {"alpha": 2, "beta": 8, "temperature": 2.0}, 0.1, 2)
    assert ltkd.arg == "ltkd,demo_resnet_teacher-demo_resnet_student,100"


@pytest.mark.parametrize("text, message", [
    ("kd,teacher", "population member 'teacher': unknown method 'teacher'"),
    ("kd,ltdk", "population member 'ltdk': unknown method 'ltdk'"),
    ("kd:seed=3", "population member 'kd:seed=3' has seed=3 where the population has 0; members differ only in"),
    ("ltkd:teacher_model=resnet8x4", "population member 'ltkd:teacher_model=resnet8x4' has "
                                     "teacher_model='resnet8x4' where the population has 'demo_resnet_teacher'"),
    ("kd:distill.alpha=2", "population member 'kd:distill.alpha=2': "),
    ("kd:distill.temperature", "population member 'kd:distill.temperature': 'distill.temperature' must be "
                               "field=value"),
    ("kd,dkd,kd", "population 'kd,dkd,kd' names a member twice"),
])
def test_a_member_that_cannot_join_is_one_line(text, message):
    with pytest.raises(ValueError) as error:
        _population(text)
    assert str(error.value).startswith(message) and "\n" not in str(error.value), str(error.value)
