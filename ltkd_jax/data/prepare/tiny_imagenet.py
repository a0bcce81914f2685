"""tfds builder for Tiny ImageNet (200 classes, 64x64 RGB), reading ``tiny-imagenet-200.zip`` from the manual dir.

tfds ships no Tiny ImageNet builder; this one is registered as ``tiny_imagenet`` when the module is imported
(``ltkd_jax.data`` does that before it touches tfds). Prepare it with::

    python -m ltkd_jax.data.prepare tiny_imagenet --manual_dir=DIR_WITH_ZIP [--data_dir=...]

Splits: ``train`` (100,000 images, labels from the ``train/<wnid>/images/`` folders) and ``validation``
(10,000 images, labels from ``val/val_annotations.txt``). The unlabeled ``test`` folder is skipped. Labels
index the sorted wnids (torchvision ImageFolder's convention); ``label`` names are the wnids. The JPEG bytes
are stored as they are (no re-encoding); the ~2% grayscale JPEGs decode to 3 channels.
"""
from __future__ import annotations

import posixpath
import zipfile

import tensorflow_datasets as tfds
from etils import epath

from ltkd_jax.data.registry import get_spec

(ZIP_NAME,) = get_spec("tiny_imagenet").manual_files
NUM_CLASSES = 200
IMAGE_SHAPE = (64, 64, 3)


def _members(zf: zipfile.ZipFile):
    """(root prefix, {relative path: member name}) with the root folder ('tiny-imagenet-200/') stripped."""
    names = [n for n in zf.namelist() if not n.endswith("/")]
    wnids = [n for n in names if posixpath.basename(n) == "wnids.txt"]
    if not wnids:
        raise ValueError(f"{ZIP_NAME}: no wnids.txt found; is this the Tiny ImageNet archive?")
    root = posixpath.dirname(min(wnids, key=len))
    prefix = root + "/" if root else ""
    return {n[len(prefix):]: n for n in names if n.startswith(prefix)}


def read_wnids(zf: zipfile.ZipFile, members) -> list:
    wnids = sorted({w.strip() for w in zf.read(members["wnids.txt"]).decode().split() if w.strip()})
    if len(wnids) != NUM_CLASSES:
        raise ValueError(f"{ZIP_NAME}: wnids.txt lists {len(wnids)} classes, expected {NUM_CLASSES}")
    return wnids


class TinyImagenet(tfds.core.GeneratorBasedBuilder):
    """Tiny ImageNet 200 (Stanford CS231n), from the official zip in the manual dir."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: train and validation splits, JPEG bytes kept as is."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Download {ZIP_NAME} (http://cs231n.stanford.edu/{ZIP_NAME}) and place it in the manual dir "
        "(`<data_dir>/downloads/manual/` by default, or pass --manual_dir)."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="Tiny ImageNet: 200 ImageNet classes, 500 training and 50 validation images each, 64x64.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=IMAGE_SHAPE, encoding_format="jpeg"),
                "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                "file_name": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"),
            homepage="https://cs231n.stanford.edu/",
        )

    def _split_generators(self, dl_manager):
        path = epath.Path(dl_manager.manual_dir) / ZIP_NAME
        if not path.exists():
            raise FileNotFoundError(f"{path} not found. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        with path.open("rb") as f, zipfile.ZipFile(f) as zf:
            self.info.features["label"].names = read_wnids(zf, _members(zf))
        return {
            "train": self._generate_examples(path, "train"),
            "validation": self._generate_examples(path, "validation"),
        }

    def _generate_examples(self, path, split):
        with epath.Path(path).open("rb") as f, zipfile.ZipFile(f) as zf:
            members = _members(zf)
            wnids = read_wnids(zf, members)
            label_of = {w: i for i, w in enumerate(wnids)}
            if split == "train":
                for rel, member in sorted(members.items()):
                    parts = rel.split("/")  # train/<wnid>/images/<file>.JPEG
                    if len(parts) == 4 and parts[0] == "train" and parts[2] == "images" and \
                            parts[3].upper().endswith(".JPEG"):
                        if parts[1] not in label_of:
                            raise ValueError(f"{ZIP_NAME}: train folder {parts[1]} is not in wnids.txt")
                        yield parts[3], {"image": zf.read(member), "label": label_of[parts[1]],
                                         "file_name": parts[3]}
            else:
                annotations = zf.read(members["val/val_annotations.txt"]).decode()
                for line in annotations.splitlines():
                    fields = line.split("\t")
                    if len(fields) < 2:
                        continue
                    fname, wnid = fields[0].strip(), fields[1].strip()
                    if wnid not in label_of:
                        raise ValueError(f"{ZIP_NAME}: val_annotations.txt names unknown wnid {wnid} ({fname})")
                    yield fname, {"image": zf.read(members["val/images/" + fname]), "label": label_of[wnid],
                                  "file_name": fname}
