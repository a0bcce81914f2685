"""Experiment configs: one file per data set, each `get_config(arg)` = `common.base(...)` plus its own numbers."""

# The config file of each data set (paths relative to the repository root, as commands give them).
CONFIG_FILES = {"cifar100": "configs/cifar100_lt.py", "tiny_imagenet": "configs/tiny_imagenet_lt.py",
                "imagenet2012": "configs/imagenet_lt.py", "fashion_mnist": "configs/fashion_mnist_lt.py"}
