"""One experiment from a config: check it, load the data, train or reuse the teacher, train the student,
write the report. `main.py` only parses flags and calls `run`."""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from ltkd_jax import config as config_lib, distill, io, losses, methods, models, recipes, run_dir, train
from ltkd_jax import data as data_lib
from ltkd_jax.data import catalog, device, folder, host, longtail

# Fields (dotted) that may change between a run and its resumption without changing its results: logging, where
# teachers and data live, and the config argument string (its resolved values are fields of their own).
RUNTIME_FIELDS = ("overwrite", "log_every_steps", "teachers_dir", "arg", "dataset.data_dir", "teacher_only")


def validate(config) -> None:
    """Every mistake in a config that can be seen before any data is read, as one ValueError line."""
    if config.method not in methods.METHODS:
        raise ValueError(f"unknown method {config.method!r}; known: {', '.join(methods.METHODS)}")
    if config.dataset.get("groups", data_lib.GROUPINGS[0]) not in data_lib.GROUPINGS:
        raise ValueError(f"dataset.groups={config.dataset.groups!r}; allowed: {', '.join(data_lib.GROUPINGS)}")
    if config.dataset.name == data_lib.IMAGE_FOLDER or catalog.is_catalog_name(config.dataset.name):
        if not config.dataset.device_resident:
            raise ValueError("dataset.device_resident=False: an image folder or tfds: data set is read from its numpy "
                             "caches; leave it True")
    if config.dataset.name == data_lib.IMAGE_FOLDER:
        if not config.dataset.get("path"):
            raise ValueError("dataset.path is empty: give the image folder, --config.dataset.path=DIR")
        classes = folder.folder_spec(config.dataset.path, config.dataset.image_size).num_classes  # listed, not read
        if config.dataset.groups == data_lib.GROUPINGS[0] and config.dataset.num_groups > classes:
            raise ValueError(f"dataset.num_groups={config.dataset.num_groups} is more than the folder's {classes} "
                             "classes; set --config.dataset.num_groups")
    elif not catalog.is_catalog_name(config.dataset.name):
        data_lib.get_spec(config.dataset.name)  # an unknown data set names the known ones
    for role in ("teacher_model", "student_model"):
        if config[role] not in models.MODEL_NAMES:
            raise ValueError(f"unknown {role.replace('_', ' ')} {config[role]!r}; known: "
                             f"{', '.join(models.MODEL_NAMES)}")
    gamma = config.dataset.imbalance_factor  # None: the split's own long tail
    if gamma is not None and not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma >= 1):
        raise ValueError(f"imbalance factor {longtail.gamma_text(gamma)} is invalid: it must be a finite number "
                         ">= 1 (1 = balanced)")
    train.check_batch_size(config.batch_size)
    train.check_batch_size(config.eval_batch_size or config.batch_size, name="eval_batch_size")  # 0: batch_size
    temperature = config.distill.get("temperature", 1.0)
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"distill.temperature={temperature!r} is invalid: it must be a finite number > 0")
    if config.dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype {config.dtype!r} is invalid; allowed: float32, bfloat16")
    for field in ("ce_loss", "teacher_loss"):
        if config[field] not in config_lib.CE_LOSSES:
            raise ValueError(f"{field} {config[field]!r} is invalid; allowed: {', '.join(config_lib.CE_LOSSES)}")
    kind = methods.METHODS[config.method].kind
    if kind == "feature":  # unsupported pair, option or image size
        distill.feature_settings(config.method, config.teacher_model, config.student_model, image_shape(config),
                                 **dict(config.distill))
    elif kind == "logit":  # bad hyper-parameters
        losses.get_distill_loss(config.method, num_groups=config.dataset.num_groups, **dict(config.distill))


def dataset_name(config) -> str:
    """The registry name of the config's data set. An image folder's or a tfds set's is checked, cached and
    registered here: by process 0 first (only it builds the caches), then by the others from them."""
    d = config.dataset
    if d.name != data_lib.IMAGE_FOLDER and not catalog.is_catalog_name(d.name):
        return d.name
    if d.name == data_lib.IMAGE_FOLDER:  # listed again each time: a changed folder is another data set
        spec = folder.folder_spec(d.path, d.image_size)
    else:
        spec = catalog.catalog_spec(d.name, d.image_size, d.data_dir or None, d.get("train_split"),
                                    d.get("eval_split"))
    key = (spec.name, d.data_dir)
    if key not in _REGISTERED:
        if jax.process_index() == 0:
            data_lib.register_normalized(spec, d.data_dir or None)
        _sync("data_cached")
        _REGISTERED[key] = data_lib.register_normalized(spec, d.data_dir or None)
    return _REGISTERED[key]


_REGISTERED = {}  # the (name, data dir) of the data sets dataset_name registered in this process


def image_shape(config):
    """The training crop (H, W, C) of the config's data set."""
    spec = data_lib.get_spec(dataset_name(config))
    if spec.image_shape is not None:
        return tuple(spec.image_shape)
    size = config.dataset.image_size or spec.default_image_size
    return (size, size, 3)


def config_differences(stored: dict, config) -> list:
    """`(field, stored value, current value)` for each dotted field where a run's stored config.json and `config`
    differ, runtime fields aside."""
    old, current = config_lib.flatten(stored), config_lib.flat_config(config)
    return [(key, old.get(key), current.get(key)) for key in sorted(set(old) | set(current))
            if key not in RUNTIME_FIELDS and old.get(key) != current.get(key)]


def refuse_workdir(config, workdir: str) -> list:
    """A one-line ValueError for a workdir that cannot hold this run: a file is in the way, or it holds a run of
    another config (unless `overwrite`). Reads only; returns the differing fields (to be overwritten)."""
    blocking = io.file_in_the_way(workdir)
    if blocking is not None:
        raise ValueError(f"workdir {workdir} cannot be created: {blocking} is a file")
    path = epath.Path(workdir) / run_dir.CONFIG_FILE
    if not path.exists():
        return []
    differing = config_differences(json.loads(path.read_text()), config)
    stored_data = trained_on(workdir)
    if not differing and stored_data is not None and stored_data != dataset_name(config):  # a changed image folder
        differing = [("data", stored_data, dataset_name(config))]
    if differing and not config.overwrite:
        key, stored, current = differing[0]
        raise ValueError(f"workdir {workdir} holds a run of another config ({key}: {stored!r} there, {current!r} "
                         "now); use another --workdir or --config.overwrite=True")
    return differing


def trained_on(workdir: str) -> Optional[str]:
    """The registered name of the data set a run directory was trained on (for a folder: its fingerprint)."""
    path = epath.Path(workdir) / data_lib.CLASS_GROUPS_FILE
    return json.loads(path.read_text()).get("dataset") if path.exists() else None


def check_workdir(config, workdir: str) -> None:
    """Refuse a workdir that holds a run of another config, unless `overwrite` (then start afresh).

    The workdir may be remote (`gs://...`) and shared by all processes: every process reads config.json before
    process 0 deletes or rewrites anything, and none goes on before process 0 is done."""
    differing = refuse_workdir(config, workdir)
    _sync("check_workdir")
    if jax.process_index() == 0:
        if differing:
            epath.Path(workdir).rmtree()
        epath.Path(workdir).mkdir(parents=True, exist_ok=True)
        io.write_file(epath.Path(workdir) / run_dir.CONFIG_FILE, config.to_json(indent=2))
    _sync("check_workdir_written")


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
        multihost_utils.sync_global_devices(name)


def dataset_info(config) -> data_lib.DatasetInfo:
    """The config's long-tailed split and its groups (labels only; no image is read)."""
    d = config.dataset
    return data_lib.get_info(
        dataset_name(config), data_dir=d.data_dir or None,
        imbalance_factor=None if d.split_file else d.imbalance_factor,
        split_seed=d.subset_seed, num_groups=d.num_groups, split_file=d.split_file or None,
        image_size=d.image_size or None, groups=d.get("groups", data_lib.GROUPINGS[0]))


def load_data(config):
    """(ExperimentData, DatasetInfo) of the config's long-tailed split, as host numpy arrays."""
    d = config.dataset
    info = dataset_info(config)
    common = dict(name=info.name, num_classes=info.num_classes, class_names=info.class_names,
                  group_ids=np.asarray(info.group_ids), train_counts=np.asarray(info.train_counts),
                  augmentation=data_lib.Augmentation(pad=info.spec.pad, flip=True, mean=info.mean, std=info.std,
                                                     crop=info.spec.augment))
    if not (info.spec.in_memory and d.device_resident):  # ImageNet: stream through the host pipeline
        return host.HostData(info=info, **common), info
    train_images, train_labels = data_lib.load_arrays(info.name, info.train_split, info.data_dir)
    test_images, test_labels = data_lib.load_arrays(info.name, info.eval_split, info.data_dir)
    return device.DeviceData(
        train_images=np.asarray(train_images[info.lt_indices]),
        train_labels=np.asarray(train_labels[info.lt_indices], np.int32), test_images=np.asarray(test_images),
        test_labels=np.asarray(test_labels, np.int32), **common), info


def teacher_config(config) -> ml_collections.ConfigDict:
    """The config of the run that trains `config`'s teacher: the same data and recipe with cross-entropy (plain,
    or `teacher_loss`), its own learning rate, epochs and seed. Nothing of the student's method is left in it, so
    every student of that seed and teacher loss shares one teacher run."""
    teacher = ml_collections.ConfigDict(config.to_dict())
    gamma = longtail.gamma_text(config.dataset.imbalance_factor)
    teacher.arg = f"teacher,{config.teacher_model}-{config.teacher_model},{gamma}"
    teacher.method, teacher.student_model = "teacher", config.teacher_model
    teacher.learning_rate = config.teacher_learning_rate
    teacher.num_epochs = config.teacher_num_epochs or config.num_epochs
    teacher.seed = config.teacher_seed
    teacher.ce_weight, teacher.distill_weight, teacher.warmup_epochs = 1.0, 1.0, 0
    teacher.ce_loss = teacher.teacher_loss = config.teacher_loss
    teacher.distill = ml_collections.ConfigDict()
    if "groups" in teacher.dataset:  # the groups shape only a student's loss: thirds and shots share a teacher
        teacher.dataset.groups = data_lib.GROUPINGS[0]
    teacher.teacher_checkpoint, teacher.teacher_only = "", False
    return teacher


def teacher_workdir(config, workdir: str) -> str:
    """Deterministic: <teachers_dir>/<data set>_gamma<γ>/<arch>_seed<s>_ep<epochs>_bs<batch>[_<dtype>][_<loss>].

    Any other difference in the teacher's recipe is caught by the workdir's config check, in one line."""
    if config.teacher_checkpoint:
        return config.teacher_checkpoint
    root = config.teachers_dir or epath.Path(io.absolute(workdir)).parent / "teachers"  # gs:// kept
    subset = (f"split_{os.path.basename(config.dataset.split_file)}" if config.dataset.split_file
              else longtail.NATURAL if config.dataset.imbalance_factor is None
              else f"gamma{longtail.gamma_text(config.dataset.imbalance_factor)}")
    # A folder's or tfds set's registered name: a changed folder (its fingerprint) trains a teacher of its own.
    data_set = dataset_name(config)
    epochs = config.teacher_num_epochs or config.num_epochs
    name = f"{config.teacher_model}_seed{config.teacher_seed}_ep{epochs}_bs{config.batch_size}"
    if config.dtype != "float32":
        name += f"_{config.dtype}"
    if config.teacher_loss != "cross_entropy":
        name += f"_{config.teacher_loss}"  # a debiased teacher
    return os.fspath(epath.Path(root) / f"{data_set}_{subset}" / name)


def make_stage(config, model_name: str, *, distilled: bool, group_ids=None, class_counts=None) -> train.Stage:
    """The stage `config` trains (its teacher's with `distilled` False), the loss bound to the data's class groups
    and training counts."""
    num_classes, dtype = data_lib.get_spec(dataset_name(config)).num_classes, jnp.dtype(config.dtype)
    name = config.method if distilled else ("teacher" if config.method == "teacher" else "student")
    ce_loss = config.teacher_loss if config.method == "teacher" else config.ce_loss  # a teacher run: its own loss
    objective = train.Objective(ce_prior_weight=float(ce_loss == "balanced_softmax"))
    if distilled:
        objective = objective.replace(ce_weight=config.ce_weight, distill_weight=config.distill_weight,
                                      warmup_epochs=config.warmup_epochs,
                                      log_temperature=config.distill.get("temperature", 1.0))
    stage = dict(name=name, learning_rate=config.learning_rate, num_epochs=config.num_epochs, seed=config.seed,
                 objective=objective)
    if distilled and methods.METHODS[config.method].kind == "feature":
        # The student wrapped with its trainable connector (FitNet regressor / ReviewKD ABF blocks).
        args = (config.method, config.teacher_model, config.student_model)
        options = dict(config.distill)
        stage.update(model=distill.build_student(*args, num_classes, image_shape(config), dtype=dtype, **options),
                     feature_loss=distill.get_feature_loss(*args, image_shape(config), **options))
        return train.Stage(**stage)
    stage["model"] = models.get_model(model_name, num_classes, dtype=dtype)
    if distilled:
        stage["distill_loss"] = losses.get_distill_loss(
            config.method, group_ids=group_ids, class_counts=class_counts,
            num_groups=config.dataset.num_groups if group_ids is None else int(np.max(group_ids)) + 1,
            **dict(config.distill))
    return train.Stage(**stage)


def _run_configs(configs, workdirs, data, info, teacher: Optional[train.Teacher]):
    """Train the runs of `configs` (one, or a population's members) together; returns each one's records."""
    config = configs[0]  # data, batch, seed and recipe are the population's (recipes.population_members)
    train.check_batch_size(config.batch_size, data.num_train)  # before the workdir holds this config
    for member, workdir in zip(configs, workdirs):
        check_workdir(member, workdir)
        if jax.process_index() == 0:
            data_lib.write_split(info, workdir)
            if teacher is not None and methods.METHODS[member.method].kind != "ce":  # the checkpoints hold
                run_dir.write_teacher_record(workdir, teacher.checkpoint, member.teacher_model)  # only the student
    stages = [make_stage(member, member.teacher_model if member.method == "teacher" else member.student_model,
                         distilled=methods.METHODS[member.method].kind != "ce", group_ids=data.group_ids,
                         class_counts=data.train_counts) for member in configs]
    train.run_population(
        stages, data, workdirs, batch_size=config.batch_size, lr_decay_epochs=config.lr_decay_epochs,
        lr_decay_rate=config.lr_decay_rate, momentum=config.momentum, weight_decay=config.weight_decay,
        teacher=teacher, keep_checkpoints=config.keep_checkpoints, eval_batch_size=config.eval_batch_size,
        eval_every_epochs=config.eval_every_epochs, checkpoint_every_epochs=config.checkpoint_every_epochs,
        log_every_steps=config.log_every_steps, steps_per_dispatch=config.steps_per_dispatch)
    _sync("stage_done")
    if jax.process_index() == 0:
        for member, workdir in zip(configs, workdirs):
            run_dir.write_report(workdir, member, data)
    return [run_dir.read_metrics(workdir) for workdir in workdirs]


def run(config, workdir: str):
    """Train (or reuse) the teacher, then the student (only the teacher with `teacher_only`); returns the metrics
    records of the last run trained. With `config.population`, its members train together, each in
    `<workdir>/<member>`, and the result is `{member: records}`."""
    validate(config)
    dataset_name(config)  # a folder's or tfds set's caches built here, every process at the same point (a barrier)
    members = recipes.population_members(config) if config.population else [("", config)]
    configs = [member for _, member in members]
    workdirs = [os.fspath(epath.Path(workdir) / name) if name else workdir for name, _ in members]
    for member in configs if config.population else ():  # a solo run's config was validated above
        validate(member)
    distilled = [member for member in configs if methods.METHODS[member.method].kind != "ce"]
    if not config.teacher_only:
        for member, member_workdir in zip(configs, workdirs):
            refuse_workdir(member, member_workdir)  # before any teacher is trained for it
    _warn_if_never_decayed(config, bool(distilled) and not config.teacher_checkpoint)
    for member, member_workdir in zip(configs, workdirs):
        _warn_if_never_reweighted(member, member_workdir)
    data, info = load_data(config)
    teacher, records = None, None
    if distilled:
        teacher_dir = teacher_workdir(distilled[0], workdir)  # a population's: where a solo run there looks
        if not config.teacher_checkpoint:  # train it, resume it, or (already finished) just reload it
            records = _run_configs([teacher_config(distilled[0])], [teacher_dir], data, info, None)[0]
        if config.teacher_only:
            return records
        teacher_model = models.get_model(config.teacher_model, data.num_classes, dtype=jnp.dtype(config.dtype))
        teacher = train.load_teacher(teacher_model, teacher_dir, data.image_shape)
    results = _run_configs(configs, workdirs, data, info, teacher)
    return dict(zip([name for name, _ in members], results)) if config.population else results[0]


def _warn_if_never_reweighted(config, workdir: str) -> None:
    """BKD's class weights start after distill.reweight_epoch: at or past the run's last epoch they never do."""
    start = config.distill.get("reweight_epoch", 0)
    if start >= config.num_epochs and jax.process_index() == 0:
        sys.stderr.write(f"warning: distill.reweight_epoch={start} is not before num_epochs={config.num_epochs} "
                         f"({workdir}): BKD's class weights never apply, it trains as KD\n")


def _warn_if_never_decayed(config, trains_teacher: bool) -> None:
    """A shortened run (--config.num_epochs=5) that keeps the recipe's decay epochs never decays: say so."""
    teacher_epochs = config.teacher_num_epochs if trains_teacher else 0  # 0: the student's, warned about already
    for name, epochs in (("num_epochs", config.num_epochs), ("teacher_num_epochs", teacher_epochs)):
        never = [epoch for epoch in config.lr_decay_epochs if epoch >= epochs]
        if epochs and never and jax.process_index() == 0:
            sys.stderr.write(f"warning: lr_decay_epochs {never} are not before {name}={epochs}: the learning "
                             "rate never decays there\n")
