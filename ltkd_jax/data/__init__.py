"""Long-tailed data for ltkd_jax: data sets, LT subsets and class groups, and their input pipelines.

``registry`` names the data sets, ``longtail`` draws the LT subsets and groups, ``source`` and ``info`` read
a prepared split (numpy caches in canonical order) and describe its LT view; ``device`` keeps a small data set
on the accelerator and draws batches inside the step, ``host`` streams any data set through tf.data (ImageNet);
``prepare`` (``python -m ltkd_jax.data.prepare NAME``) downloads and caches. ``import ltkd_jax.data`` imports
neither TensorFlow nor JAX. Data sets, subsets, canonical order, streams and preparation: docs/data.md.
"""
from ltkd_jax.data.host import Batches, HostData, build_dataset
from ltkd_jax.data.info import (CLASS_GROUPS_FILE, GROUPINGS, Augmentation, DatasetInfo, ExperimentData, get_info, read_split,
                                write_split)
from ltkd_jax.data.longtail import (SHOT_THRESHOLDS, class_groups, exponential_counts, group_sizes,
                                    select_indices, shot_masks)
from ltkd_jax.data.registry import DATASETS, IMAGE_FOLDER, DatasetSpec, get_spec, known_names
from ltkd_jax.data.sampling import epoch_order, eval_layout
from ltkd_jax.data.source import load_arrays, register_normalized, split_metadata
from ltkd_jax.data.tf_env import default_data_dir, hide_accelerators_from_tf

__all__ = [
    "Augmentation", "Batches", "CLASS_GROUPS_FILE", "GROUPINGS", "DATASETS", "DatasetInfo", "DatasetSpec", "ExperimentData", "HostData", "IMAGE_FOLDER", "SHOT_THRESHOLDS", "build_dataset", "class_groups",
    "default_data_dir", "epoch_order", "eval_layout", "exponential_counts", "get_info", "get_spec",
    "group_sizes", "hide_accelerators_from_tf", "known_names", "load_arrays", "read_split", "register_normalized", "select_indices",
    "shot_masks", "split_metadata", "write_split",
]
