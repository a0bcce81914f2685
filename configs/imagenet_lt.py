"""ImageNet-LT (paper Table V: gamma in {5, 10, 20}); needs ImageNet in tfds's manual dir (docs/data.md).

    python -m ltkd_jax.main --config=configs/imagenet_lt.py:ltkd,resnet34-resnet18,10 --workdir=runs/inet

For the literature's OLTR split instead of the exponential profile: --config.dataset.split_file=ImageNet_LT_train.txt
"""
from ltkd_jax import recipes


def get_config(arg=None):
    # mdistiller's ImageNet recipe: 100 epochs, batch 512, lr 0.2 x0.1 at 30/60/90, weight decay 1e-4,
    # distillation warm-up 1 epoch.
    config = recipes.base("imagenet2012", arg or "ltkd,resnet34-resnet18,10", num_epochs=100, batch_size=512,
                          learning_rate=0.2, lr_decay_epochs=(30, 60, 90), weight_decay=1e-4, warmup_epochs=1)
    config.dataset.image_size = 224
    config.dataset.device_resident = False  # streamed through the host tf.data pipeline
    if config.method in ("kd", "dkd"):
        config.distill.temperature = 1.0  # mdistiller's ImageNet KD / DKD
    if config.method == "kd":
        config.ce_weight, config.distill_weight = 0.5, 0.5  # mdistiller's ImageNet KD
    return config
