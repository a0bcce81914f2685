"""The recipe every experiment shares and the config files that finish it: `base(dataset, arg, ...)` builds one
run from a data set's numbers (given by its file in `configs/`) and the method's defaults (`methods.py`);
`build_config` loads a data set's config file by path, as `--config=configs/...` does; `population_members` builds
the members of a population. No JAX here."""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from ltkd_jax import config as config_lib, methods
from ltkd_jax.data import catalog, longtail

# The config file of each data set, relative to the checkout (the commands' `--config=` paths).
CONFIG_FILES = {"cifar100": "configs/cifar100_lt.py", "tiny_imagenet": "configs/tiny_imagenet_lt.py",
                "imagenet2012": "configs/imagenet_lt.py", "fashion_mnist": "configs/fashion_mnist_lt.py",
                "image_folder": "configs/image_folder.py"}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOW_LR_STUDENTS = ("shufflenet_v1", "mobilenet_v2")  # mdistiller lowers their learning rate to 0.01 on CIFAR


def base(dataset: str, arg: str, *, num_epochs: int, batch_size: int, learning_rate: float, lr_decay_epochs,
         weight_decay: float, warmup_epochs: int) -> ml_collections.ConfigDict:
    """One run of `dataset` picked by `arg` ("method,teacher-student,gamma"); any field is overridable."""
    method, teacher, student, imbalance_factor = config_lib.parse_arg(arg)
    c = ml_collections.ConfigDict()
    c.arg, c.method, c.teacher_model, c.student_model = arg, method, teacher, student
    c.teacher_only = False  # train (or reuse) this config's teacher, then stop (the sweep's teacher jobs)
    # Students trained with this one in one program, sharing its teacher's forward pass, e.g.
    # "student,kd,dkd,ltkd:distill.alpha=2:distill.beta=8"; each in <workdir>/<member> ("" = this run alone).
    c.population = ""

    c.dataset = ml_collections.ConfigDict()
    c.dataset.name = dataset
    c.dataset.data_dir = ""  # '' = tfds's default (or $TFDS_DATA_DIR)
    c.dataset.imbalance_factor = imbalance_factor  # gamma = n_max / n_min (LDAM-DRW's exponential profile)
    c.dataset.subset_seed = 0  # LDAM-DRW's selection seed: the literature's CIFAR-100-LT subset
    c.dataset.num_groups = 3  # head / medium / tail (the paper)
    c.dataset.split_file = ""  # ImageNet-LT: an OLTR-style 'path label' list instead of the exponential profile
    c.dataset.image_size = 0  # 0 = the data set's native size
    c.dataset.device_resident = True  # small data sets live on the accelerator; batches drawn in the step

    # Recipe (mdistiller): SGD momentum 0.9 (no Nesterov), weight decay on every parameter, step decay x0.1.
    c.num_epochs = num_epochs
    c.batch_size = batch_size  # global batch, split over all devices of all processes
    c.learning_rate = learning_rate
    c.lr_decay_epochs = tuple(lr_decay_epochs)
    c.lr_decay_rate = 0.1
    c.momentum = 0.9
    c.weight_decay = weight_decay
    c.dtype = "float32"  # compute dtype: 'float32' or 'bfloat16' (parameters stay float32)
    c.seed = 0

    # Student objective: ce_weight * CE + min(epoch / warmup_epochs, 1) * distill_weight * distill loss.
    c.ce_weight = 1.0
    c.distill_weight = 1.0
    c.warmup_epochs = warmup_epochs
    c.ce_loss = "cross_entropy"  # or "balanced_softmax": CE of logits + log class prior (Ren et al. 2020)
    c.teacher_loss = "cross_entropy"  # the teacher's; "balanced_softmax": a debiased one (its own directory)
    c.distill = ml_collections.ConfigDict()
    for field, value in methods.METHODS[method].settings(f"{teacher}-{student}").items():  # the method's own
        _set(c, field, value)

    # Where the teacher comes from: an explicit checkpoint, or <teachers_dir>/<data set>_gamma<γ>/<arch>_seed...
    # (trained there first if missing, shared by every student of that seed).
    c.teacher_checkpoint = ""
    c.teachers_dir = ""  # '' = <workdir>/../teachers
    c.teacher_seed = 0
    c.teacher_num_epochs = 0  # 0 = num_epochs
    c.teacher_learning_rate = learning_rate  # teachers train with CE (teacher_loss) on the same split and recipe

    c.eval_batch_size = 1024  # global; evaluation pads the last batch and masks it
    c.eval_every_epochs = 1
    c.checkpoint_every_epochs = 1
    c.keep_checkpoints = 2
    c.log_every_steps = 50
    c.steps_per_dispatch = 1  # >1: several steps per jitted call with lax.scan (accelerators)
    c.overwrite = False  # True: a workdir holding another config is deleted and started afresh
    return c


def _set(c: ml_collections.ConfigDict, field: str, value) -> None:
    *parents, name = field.split(".")
    for parent in parents:
        c = c[parent]
    c[name] = value


def config_file(dataset: str) -> str:
    """The absolute path of `dataset`'s config file in this checkout (a `tfds:<name>`'s: the image folder's)."""
    if catalog.is_catalog_name(dataset):
        dataset = "image_folder"
    if dataset not in CONFIG_FILES:
        raise ValueError(f"unknown data set {dataset!r}; known: {', '.join(sorted(CONFIG_FILES))}")
    path = os.path.join(REPO_ROOT, CONFIG_FILES[dataset])
    if not os.path.isfile(path):
        raise ValueError(f"config file {path} not found: the config files are in the checkout, not installed "
                         "(install with pip install -e .)")
    return path


def build_config(dataset: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """The config `configs/<dataset's file>.py:arg` builds (the file's default argument when `arg` is None),
    loaded by path as config_flags loads `--config`."""
    path = config_file(dataset)
    spec = importlib.util.spec_from_file_location(f"ltkd_config_{dataset}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


# What the members of a population may set differently (with every `distill.*` field): the rest -- data, teacher,
# seed, batch, recipe -- is the population's, so that one teacher and one stream of batches serve them all.
MEMBER_FIELDS = ("arg", "method", "student_model", "learning_rate", "ce_weight", "distill_weight", "warmup_epochs")


def population_members(config) -> list:
    """`[(name, member config)]` of `config.population`, e.g. `"student,kd,dkd,ltkd:distill.alpha=2:distill.beta=8"`:
    each member is `method[:field=value...]`, built by the data set's config file for the population's pair and γ
    (so it has its method's defaults), then given the fields the population's config sets on top of what its
    own argument builds (where the member has them), then its own `field=value`s. A one-line ValueError names a
    member that cannot join."""
    base, population = config_lib.flatten(build_config(config.dataset.name, config.arg).to_dict()), config_lib.flatten(config.to_dict())
    common = {key: value for key, value in population.items()
              if base.get(key) != value and key not in ("arg", "method", "population")}
    _, teacher, student, _ = config_lib.parse_arg(config.arg)
    gamma = longtail.gamma_text(config_lib.parse_arg(config.arg)[3])
    members = []
    for spec in (s.strip() for s in config.population.split(",")):
        method, *assignments = spec.split(":")
        if method not in methods.METHODS or method == "teacher":
            raise ValueError(f"population member {spec!r}: unknown method {method!r}; known: "
                             f"{', '.join(m for m in methods.METHODS if m != 'teacher')}")
        own = dict(config_lib.assignment(spec, text) for text in assignments)
        member = build_config(config.dataset.name, f"{method},{teacher}-{own.get('student_model', student)},{gamma}")
        fields = config_lib.flatten(member.to_dict())
        member.lock()  # a member's field=value names a field its method has
        try:
            member.update_from_flattened_dict({k: v for k, v in common.items() if k in fields and k not in own})
            member.update_from_flattened_dict(own)
        except (AttributeError, KeyError, TypeError) as error:
            raise ValueError(f"population member {spec!r}: {str(error).splitlines()[0]}") from None
        member.population = ""
        for key, value in config_lib.flatten(member.to_dict()).items():
            if key not in MEMBER_FIELDS + ("population",) and not key.startswith("distill.") \
                    and population.get(key) != value:
                raise ValueError(f"population member {spec!r} has {key}={value!r} where the population has "
                                 f"{population.get(key)!r}; members differ only in {', '.join(MEMBER_FIELDS)} "
                                 "and distill.*")
        members.append((config_lib.member_name(spec), member))
    names = [name for name, _ in members]
    if len(set(names)) != len(names):
        raise ValueError(f"population {config.population!r} names a member twice")
    return members
