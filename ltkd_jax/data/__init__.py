"""Long-tailed data for ltkd_jax: LT subsets, class groups, and input pipelines (tfds / numpy).

``import ltkd_jax.data`` imports neither TensorFlow nor JAX; TF is imported (with every GPU/TPU hidden from
it, see :func:`hide_accelerators_from_tf`) only when a tf.data pipeline is built or a missing cache is made.

Data sets (:data:`DATASETS`; an unknown name raises a ValueError listing these):

============== ======= ====== ========================= =================================================
name           classes image  eval split                augmentation (train) / normalisation
============== ======= ====== ========================= =================================================
cifar100       100     32x32  test (10,000)             pad 4 + crop 32 + flip; CIFAR-100 mean/std
tiny_imagenet  200     64x64  validation (10,000)       pad 8 + crop 64 + flip; ImageNet mean/std
fashion_mnist  10      28x28  test (10,000)             pad 2 + crop 28 + flip; mean 0.2860, std 0.3530
imagenet2012   1000    224*   validation (50,000)       random-resized-crop (0.08-1, 3/4-4/3) + flip;
                                                        eval resize 256* + centre crop 224*; ImageNet mean/std
============== ======= ====== ========================= =================================================

(* ``image_size`` is configurable for ImageNet; the eval resize scales with it as 256/224.) ``tiny_imagenet``
is our tfds builder (:mod:`ltkd_jax.data.tiny_imagenet`) reading ``tiny-imagenet-200.zip`` from the manual
dir; ``imagenet2012`` is tfds's manual-download builder. Prepare a data set with
``python -m ltkd_jax.data.prepare NAME [--data_dir=DIR]`` (Fashion-MNIST works offline from Debian's
``dataset-fashion-mnist`` package; see :mod:`ltkd_jax.data.prepare`). The data dir defaults to
``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``; our caches live in ``<data_dir>/ltkd_jax/``.

Typical use in a trainer::

    from ltkd_jax import data
    info = data.get_info("cifar100", data_dir=d, imbalance_factor=100)    # LT subset, groups, counts
    if jax.process_index() == 0:
        data.write_split(info, workdir)             # lt_indices.npy + class_groups.json
    for epoch in range(start_epoch, num_epochs):
        for batch in data.build_dataset(info, "train", global_batch_size=64, seed=seed, epoch=epoch):
            ...                                     # batch["image"] (B,H,W,C) uint8, batch["label"] (B,) i32
    for batch in data.build_dataset(info, "eval", global_batch_size=256):
        ...                                         # + batch["mask"]: False on padding
    # normalise on the device: ltkd_jax.device_input.normalize(image, info.mean, info.std)

Long-tailed subset (LDAM-DRW; :mod:`ltkd_jax.data.longtail`): per-class counts
``floor(n_c * gamma**(-c/(C-1)))`` from the full split's counts; the kept examples are LDAM-DRW's
(``RandomState(split_seed=0)``, classes ascending, shuffle each class's indices in file order, keep the
first ``n_c``). ImageNet also takes an OLTR split file (``relative/path label`` lines, matched by file name).
Example indices count in the *canonical order* of a split (:mod:`ltkd_jax.data.source`): the original
CIFAR-100 file order (tfds ``id``), ImageFolder order for ImageNet/Tiny ImageNet (sorted ``file_name``),
tfds's stored order for Fashion-MNIST. Groups: classes sorted by training count (descending, ties by label)
and cut with ``np.array_split`` (0 = head ... ``num_groups - 1`` = tail); shots: many > 100, medium 20-100,
few < 20 training images.

Streams (:func:`build_dataset`): training shuffles the LT subset per epoch from ``(seed, epoch)`` only (a run
resumed at epoch ``e`` sees the same stream; augmentation randomness likewise), drops the epoch's remainder
(``len(info.lt_indices) // global_batch_size`` steps on every process) and gives each process its
``global_batch_size / process_count`` share of every global batch. Evaluation covers every example exactly
once on any number of processes, all running ``ceil(N / global_batch_size)`` steps, the last batch padded
(``mask`` False, ``label`` 0, ``index`` -1, ``image`` 0). Batches are dicts of numpy arrays: ``image``
uint8 NHWC (not normalised: the device does that, see above), ``label`` int32, ``index`` int32 (canonical
example index), and ``mask`` bool (eval).

Backends: ``"numpy"`` (cifar100, tiny_imagenet, fashion_mnist; default for them) reads the uint8 arrays of
:func:`load_arrays` (``<data_dir>/ltkd_jax/<name>/<split>/images.npy``) with numpy only and augments on the
host; ``"tf"`` streams the tfds records through tf.data (the only choice for imagenet2012). Both put the same
examples on the same process each epoch; only the numpy backend also fixes the order within the epoch
independently of tf.data's shuffle buffer. For augmentation on the accelerator, the building blocks are
public: :func:`epoch_order`, :func:`crop_flip_params`, :func:`pad_crop_flip`.
"""
from ltkd_jax.data._env import default_data_dir, hide_accelerators_from_tf
from ltkd_jax.data.augment import pad_crop_flip
from ltkd_jax.data.info import DatasetInfo, get_info, read_split, write_split
from ltkd_jax.data.longtail import (SHOT_THRESHOLDS, class_groups, exponential_counts, group_sizes,
                                    select_indices, shot_masks)
from ltkd_jax.data.pipeline import Batches, build_dataset
from ltkd_jax.data.registry import DATASETS, DatasetSpec, get_spec, known_names
from ltkd_jax.data.sampling import crop_flip_params, epoch_order, eval_layout
from ltkd_jax.data.source import load_arrays, split_metadata

__all__ = [
    "Batches", "DATASETS", "DatasetInfo", "DatasetSpec", "SHOT_THRESHOLDS", "build_dataset", "class_groups",
    "crop_flip_params", "default_data_dir", "epoch_order", "eval_layout", "exponential_counts", "get_info",
    "get_spec", "group_sizes", "hide_accelerators_from_tf", "known_names", "load_arrays",
    "pad_crop_flip", "read_split", "select_indices", "shot_masks", "split_metadata", "write_split",
]
