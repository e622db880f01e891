"""The dist folder: what YARN containers need, deployed once by a Hadoop admin.

``dato-dist hadoop install hdfs://.../dato-dist-folder`` builds a virtualenv holding this
dato-dist (a wheel of the running, installed dato-dist: :mod:`dato_dist.wheel`, so it works
from a wheel install as from a checkout) and its container-side dependencies, packs it
with venv-pack, and uploads it with the folder's defaults::

    <folder>/config.json                defaults (containers, size, vcores, ports), version,
                                        Python version, the env archive's name, the
                                        wheel's content hash
    <folder>/env/dato-dist-<v>-<hash>.tar.gz   the packed environment (YARN unpacks it)
    <folder>/user_packages/             wheels/sdists installed into containers on demand
    <folder>/jobs/                      the job store of jobs run through this folder

Why venv-pack: the environment is a plain ``python -m venv`` (no conda needed on edge
nodes); venv-pack makes it relocatable except for the interpreter, which it links to a
given prefix (``--python-prefix``): every node needs that Python at that path, as it does
for PySpark's and dask-yarn's packed venvs.

Re-running ``install`` is safe: the archive goes under a new name, ``config.json`` is
replaced atomically to point at it, then older archives are removed.
"""

import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dato_dist import _version, wheel
from dato_dist.errors import DatoDistError, InvalidArgument
from dato_dist.store import Store

log = logging.getLogger(__name__)

CONFIG = "config.json"
ENV_DIR = "env"
PACKAGES_DIR = "user_packages"
JOBS_DIR = "jobs"
#: What the containers import besides dato_dist itself.
CONTAINER_REQUIREMENTS = ["skein>=0.8.2", "hdfs-native>=0.14"]
#: The dist folder's settings; their defaults are the ``[hadoop]`` config keys of these names.
DEFAULT_KEYS = ("num_containers", "container_size", "num_vcores", "start_port", "end_port")


def defaults():
    """A new dist folder's settings from the configuration (conf/defaults.toml [hadoop])."""
    from dato_dist.config import load

    cfg = load()
    return {key: cfg[f"hadoop.{key}"] for key in DEFAULT_KEYS}


def default_cache_dir():
    """Where packed environments are kept: ``$DATO_DIST_CACHE``, else config key
    ``hadoop.cache_dir``, else ``~/.cache/dato-dist``."""
    from dato_dist.config import load

    return Path(os.path.expanduser(os.environ.get("DATO_DIST_CACHE")
                                   or load()["hadoop.cache_dir"] or "~/.cache/dato-dist"))


class DistFolderError(DatoDistError, ValueError):
    """The dist folder is missing, incomplete or from another dato-dist version."""

    exit_code = 2


def check_ports(start_port, end_port):
    for label, port in (("start_port", start_port), ("end_port", end_port)):
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise InvalidArgument(f"{label} must be a port number (1-65535), got {port!r}.")
    if start_port > end_port:
        raise InvalidArgument(
            f"The port range {start_port} - {end_port} is inverted: start_port must not be "
            "above end_port.")


def check_positive(label, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidArgument(f"{label} must be a positive int, got {value!r}.")


def _run(cmd, what, timeout=1200):
    log.info("%s: %s", what, " ".join(str(c) for c in cmd))
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise DistFolderError(f"{what} failed ({out.returncode}):\n{out.stdout[-2000:]}\n"
                              f"{out.stderr[-4000:]}")
    return out.stdout


def build_env(*, python=sys.executable, python_prefix=None, cache_dir=None, whl=None):
    """Build (or reuse from the cache) the packed environment; return its local path.

    ``whl`` is the dato-dist wheel to install (default: :func:`dato_dist.wheel.build`); the
    archive's name carries its content hash, so a changed install makes a new env.
    """
    whl = Path(whl) if whl else wheel.build()
    key = f"dato-dist-{_version.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-" \
          f"{whl.parent.name}"
    cache = Path(cache_dir or default_cache_dir()) / "envs"
    archive = cache / f"{key}.tar.gz"
    if archive.is_file():
        log.info("Reusing the packed environment %s", archive)
        return archive
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(prefix="dato-dist-env-") as tmp:
        tmp = Path(tmp)
        _run([python, "-m", "venv", tmp / "venv"], "Creating the container virtualenv")
        venv_python = tmp / "venv" / "bin" / "python"
        _run([venv_python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
              whl, *CONTAINER_REQUIREMENTS], "Installing dato-dist into it")
        import venv_pack

        partial = archive.with_suffix(".partial")
        venv_pack.pack(prefix=str(tmp / "venv"), output=str(partial), compress_level=1,
                       python_prefix=python_prefix, force=True, format="tar.gz")
        os.replace(partial, archive)
    return archive


def _upload(store, local_path, rel):
    """Copy a local file into the store under ``rel``, atomically (temp name, then rename)."""
    import pyarrow.fs as pafs

    tmp_rel = f"{rel}.uploading"
    store.fs.create_dir(store.path(rel).rsplit("/", 1)[0], recursive=True)
    pafs.copy_files(str(local_path), store.path(tmp_rel),
                    source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=store.fs)
    store._replace(store.path(tmp_rel), store.path(rel))


def read_config(dist_path):
    """The folder's ``config.json``; ``ValueError`` naming the path when it is not there."""
    store = Store(dist_path)
    try:
        config = store.read_json(CONFIG)
    except FileNotFoundError:
        raise DistFolderError(
            f"No dato-dist folder at '{dist_path}' ({CONFIG} is missing). A Hadoop admin "
            f"deploys it with: dato-dist hadoop install {dist_path}") from None
    except OSError as e:
        raise DistFolderError(f"The dato-dist folder '{dist_path}' cannot be read: {e}") from None
    return config


def check_version(dist_path, config):
    if config.get("dato_dist_version") != _version.__version__:
        raise DistFolderError(
            f"The dato-dist folder '{dist_path}' holds dato-dist "
            f"{config.get('dato_dist_version')}, this client is {_version.__version__}. "
            f"Re-deploy it (dato-dist hadoop install {dist_path}) or use a matching client.")
    try:
        mine = wheel.content_hash()
    except DatoDistError:  # a dato_dist without pip metadata can still submit jobs
        return
    if config.get("wheel_hash") and config["wheel_hash"] != mine:
        log.warning("The dato-dist folder '%s' holds another build of dato-dist %s than this "
                    "client's (wheel %s, this client %s); re-deploy it if you changed "
                    "dato-dist.", dist_path, _version.__version__, config["wheel_hash"], mine)


def install(dist_path, *, num_containers=None, container_size=None, num_vcores=None,
            start_port=None, end_port=None, python_prefix=None):
    """Build and upload the dist folder to ``dist_path``; return its config."""
    settings = defaults()
    for key, value in (("num_containers", num_containers), ("container_size", container_size),
                       ("num_vcores", num_vcores), ("start_port", start_port),
                       ("end_port", end_port)):
        if value is not None:
            settings[key] = value
    for key in ("num_containers", "container_size", "num_vcores"):
        check_positive(key, settings[key])
    check_ports(settings["start_port"], settings["end_port"])
    store = Store(dist_path)
    store.check()
    whl = wheel.build()
    archive = build_env(python_prefix=python_prefix, whl=whl)
    env_rel = f"{ENV_DIR}/{archive.name}"
    log.info("Uploading %s (%.0f MB) to %s", archive.name, archive.stat().st_size / 2**20,
             store.display_path(env_rel))
    _upload(store, archive, env_rel)
    config = dict(settings, dato_dist_version=_version.__version__,
                  wheel_hash=whl.parent.name,
                  python_version="%d.%d" % sys.version_info[:2], env_archive=env_rel,
                  installed=time.time())
    store.write_json(CONFIG, config)
    for name in store.list(ENV_DIR):
        if name != archive.name:
            store.delete(f"{ENV_DIR}/{name}")
    return config


def show(dist_path):
    """What is deployed at ``dist_path``, as text."""
    config = read_config(dist_path)
    packages = list_packages(dist_path)
    lines = [f"dato-dist folder: {dist_path}",
             f"  dato-dist version   : {config['dato_dist_version']}",
             f"  Python              : {config['python_version']}",
             f"  environment         : {config['env_archive']}",
             f"  installed           : {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(config['installed']))}",
             f"  containers          : {config['num_containers']} x {config['container_size']} MB, "
             f"{config['num_vcores']} vcores",
             f"  port range          : {config['start_port']} - {config['end_port']}",
             f"  user packages       : {packages or 'none'}"]
    return "\n".join(lines)


# -- user packages ------------------------------------------------------------------------
def list_packages(dist_path):
    return Store(dist_path).list(PACKAGES_DIR)


def upload_packages(dist_path, filename_or_dir, force=False):
    """Upload a wheel/sdist (or every one in a folder) to the folder's user packages."""
    path = Path(os.path.expanduser(filename_or_dir))
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith((".whl", ".tar.gz", ".zip")))
    elif path.is_file():
        files = [path]
    else:
        raise InvalidArgument(f"No package file or folder at '{filename_or_dir}'.")
    if not files:
        raise InvalidArgument(f"No .whl, .tar.gz or .zip package in '{filename_or_dir}'.")
    store = Store(dist_path)
    read_config(dist_path)
    existing = set(list_packages(dist_path))
    for f in files:
        if f.name in existing and not force:
            raise InvalidArgument(f"The package {f.name} is already in {dist_path}; pass "
                                  "force=True to replace it.")
        _upload(store, f, f"{PACKAGES_DIR}/{f.name}")
    return [f.name for f in files]


def remove_package(dist_path, filename):
    store = Store(dist_path)
    if filename not in list_packages(dist_path):
        raise InvalidArgument(f"No user package {filename} in {dist_path}.")
    store.delete(f"{PACKAGES_DIR}/{filename}")


def default_packages():
    """``name==version`` of what the packed environment holds besides the user packages."""
    from importlib import metadata

    names = ["dato-dist", "cloudpickle", "pyarrow", "skein", "hdfs-native"]
    out = []
    for name in names:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return out


__all__ = ["install", "show", "read_config", "check_version", "upload_packages",
           "remove_package", "list_packages", "DistFolderError"]
