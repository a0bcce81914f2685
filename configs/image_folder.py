"""Your own long-tailed images: a folder `DIR/train/<class>/<image>`, `DIR/test/<class>/<image>` (or `val/`),
trained on as it is (no subsampling unless a γ is given after the pair). The teacher is trained on DIR first,
then the student(s), then the report:

    python -m ltkd_jax.main --config=configs/image_folder.py:ltkd,resnet32x4-resnet8x4 \
        --config.dataset.path=DIR --workdir=runs/mine [--config.population=student,kd,ltkd]
    python -m ltkd_jax.tools.export --workdir=runs/mine --format=tflite --out=exported/mine.tflite
    python -m ltkd_jax.tools.predict --model=exported/mine.tflite IMAGE...

Images are resized to `dataset.image_size` (default 32, the CIFAR models' size) and normalised with the training
images' own mean and std. The same recipe trains any tfds image-classification data set, e.g.
`--config.dataset.name=tfds:oxford_flowers102 --config.dataset.eval_split=validation` instead of the path.
"""
from ltkd_jax import recipes


def get_config(arg=None):
    # A 60-epoch version of the CIFAR recipe (lr 0.05, batch 64, decay x0.1 at 60% and 80%, weight decay 5e-4);
    # the methods keep their CIFAR defaults.
    config = recipes.base("image_folder", arg or "ltkd,resnet32x4-resnet8x4", num_epochs=60, batch_size=64,
                          learning_rate=0.05, lr_decay_epochs=(36, 48), weight_decay=5e-4, warmup_epochs=10)
    config.dataset.path = ""  # the folder (required)
    config.dataset.groups = "thirds"  # or "shots": many (> 100 images) / medium (20-100) / few (< 20)
    # (No subsampling by default: a γ goes after the pair, ltkd,resnet32x4-resnet8x4,10; the field has no flag of its
    # own while it is None.)
    # Any tfds image-classification data set instead of a folder: --config.dataset.name=tfds:oxford_flowers102,
    # its splits named here.
    config.dataset.train_split = "train"
    config.dataset.eval_split = "test"
    return config
