"""Prepare a data set for ltkd_jax: ``python -m ltkd_jax.data.prepare NAME [--data_dir=DIR] [...]``.

Runs tfds's ``download_and_prepare``, then builds the numpy caches, so that training small data sets needs no
TensorFlow. Sources, directories, the already-prepared case and errors: docs/data.md ("Preparation")."""
from __future__ import annotations

import argparse
import os
import socket
import sys

from etils import epath

from ltkd_jax import io
from ltkd_jax.data import source, tf_env
from ltkd_jax.data.prepare import fashion_mnist
from ltkd_jax.data.registry import get_spec, known_names

# Where tfds downloads a data set from, as (host, port): checked before a download starts, since offline
# tfds's downloader retries for minutes before it fails. The manual-download data sets have no entry.
DOWNLOAD_HOSTS = {
    "fashion_mnist": ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80),
    "cifar100": ("www.cs.toronto.edu", 443),
}


class PrepareError(RuntimeError):
    pass


def _network_reachable(host: str, port: int = 80, timeout: float = 5.0) -> bool:
    """Whether a download can start: a proxy in the environment counts as yes (a direct connection may be
    blocked where the proxy gets through); otherwise a TCP connection to `host`."""
    if any(os.environ.get(name) for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")):
        return True
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def prepare(name: str, *, data_dir=None, manual_dir=None, source_dir: str = fashion_mnist.DEBIAN_DIR,
            arrays: bool = True, network_check=None) -> str:
    """Prepare ``name`` in ``data_dir`` and build its numpy caches; returns the data dir."""
    spec = get_spec(name)
    data_dir = tf_env.resolve_data_dir(data_dir)
    blocking = io.file_in_the_way(data_dir)
    if blocking is not None:
        raise PrepareError(f"data dir {data_dir} cannot be created: {blocking} is a file")
    manual_dir = io.absolute(os.path.expanduser(manual_dir)) if manual_dir else os.fspath(
        epath.Path(data_dir) / "downloads" / "manual")
    _, tfds = tf_env.import_tfds()
    builder = source.builder(spec, data_dir)
    # A prepared data set needs no manual files, no Debian files and no network: only its caches are (re)built.
    prepared = _is_prepared(builder)
    reachable = network_check or _network_reachable  # called as reachable(host, port)
    if name == "fashion_mnist":
        if fashion_mnist.find_debian_files(source_dir):
            fashion_mnist.restore_files(source_dir, manual_dir)
            config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        elif prepared:
            config = None
        elif reachable(*DOWNLOAD_HOSTS[name]):
            config = tfds.download.DownloadConfig()
        else:
            raise PrepareError(f"fashion_mnist: no Debian files in {source_dir} and no network; install them with: "
                               f"apt-get install {fashion_mnist.APT_PACKAGE}")
    elif spec.manual_files:
        files = spec.manual_files
        missing = [f for f in files if not (epath.Path(manual_dir) / f).exists()]
        if missing and not prepared:
            raise PrepareError(f"{name}: {' and '.join(missing)} not found in manual dir {manual_dir} (put "
                               f"{' and '.join(files)} there, or pass --manual_dir=DIR)")
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    else:
        # Offline, tfds's downloader would retry for minutes before failing: say so at once.
        address = DOWNLOAD_HOSTS.get(name)
        if address and not prepared and not reachable(*address):
            raise PrepareError(f"{name}: not prepared in {data_dir} and {address[0]} cannot be reached (no "
                               f"network); prepare it where there is one and copy {data_dir} here, or set "
                               "HTTPS_PROXY")
        config = tfds.download.DownloadConfig()
    if not prepared:
        builder.download_and_prepare(download_config=config)
    _build_caches(name, data_dir, arrays)
    return data_dir


def _is_prepared(builder) -> bool:
    try:
        return (epath.Path(builder.data_dir) / "dataset_info.json").exists()
    except Exception:  # pragma: no cover - defensive
        return False


def _build_caches(name: str, data_dir: str, arrays: bool):
    """Build (or verify) the numpy caches of both splits; a damaged one is deleted and built again."""
    spec = get_spec(name)
    for split in (spec.train_split, spec.eval_split):
        for attempt in range(2):
            try:
                if arrays and spec.in_memory:
                    source.load_arrays(name, split, data_dir, mmap=True)
                else:
                    source.split_metadata(name, split, data_dir)
                break
            except source.DataCacheError as error:
                if attempt:
                    raise
                print(f"prepare: data cache {error.path} is damaged ({error.problem}): building it again", file=sys.stderr)
                epath.Path(tf_env.cache_dir(data_dir, name, split)).rmtree()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ltkd_jax.data.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("name", help=f"data set: {', '.join(known_names())}")
    parser.add_argument("--data_dir", default=None,
                        help="tfds data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--manual_dir", default=None, help="manual download dir (default <data_dir>/downloads/manual)")
    parser.add_argument("--source_dir", default=fashion_mnist.DEBIAN_DIR,
                        help="fashion_mnist: where Debian's dataset-fashion-mnist files are")
    parser.add_argument("--no_arrays", action="store_true", help="skip the uint8 numpy image caches")
    args = parser.parse_args(argv)
    try:
        out = prepare(args.name, data_dir=args.data_dir, manual_dir=args.manual_dir, source_dir=args.source_dir,
                      arrays=not args.no_arrays)
    except (PrepareError, ValueError, FileNotFoundError, OSError) as err:
        print(f"prepare: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(f"prepared {args.name} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
