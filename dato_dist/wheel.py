"""A wheel of the running dato-dist, for the machines a job runs on.

The Hadoop dist folder and the EC2 hosts get the dato-dist the client runs, however it was
installed (a wheel, ``pip install --user``, ``--target``, an editable checkout): the wheel
is made from the imported package folders (found with importlib, which also follows an
editable install's mapping of ``ec2/``, ``yarn_app/`` and ``conf/``) and the installed
distribution's ``METADATA`` and ``entry_points.txt``. No pip and no source tree needed::

    from dato_dist import wheel
    path = wheel.build()          # ~/.cache/dato-dist/wheels/<hash>/dato_dist-0.1.0-py3-none-any.whl
    wheel.content_hash()          # what makes a changed install a new env / bundle

The wheel lists one top-level package, ``dato_dist``. It is built once per content hash
into the user's cache folder (``$DATO_DIST_CACHE``, default ``~/.cache/dato-dist``; folders
``0700``), and its bytes depend only on the content (sorted entries, fixed timestamps).
"""

import base64
import hashlib
import importlib.util
import io
import logging
import os
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from dato_dist import _version
from dato_dist.errors import PackagingError

log = logging.getLogger(__name__)

DIST_NAME = "dato-dist"
#: The packages whose folders go into the wheel. Subpackages inside a folder come with it;
#: these are listed because an editable install maps them to folders of their own.
PACKAGES = ("dato_dist", "dato_dist.conf", "dato_dist.ec2", "dato_dist.yarn_app")
#: Files of the installed dist-info that are copied; the rest (RECORD, INSTALLER,
#: direct_url.json, top_level.txt, ...) describe the install, not the package.
METADATA_FILES = ("METADATA", "entry_points.txt")
WHEEL_TEXT = ("Wheel-Version: 1.0\nGenerator: dato-dist (dato_dist.wheel)\n"
              "Root-Is-Purelib: true\nTag: py3-none-any\n")
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date: same content, same bytes


def cache_root():
    """The user's dato-dist cache folder (``$DATO_DIST_CACHE`` or ``~/.cache/dato-dist``)."""
    return Path(os.environ.get("DATO_DIST_CACHE")
                or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "dato-dist")


def _private_dir(path):
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _package_dir(name):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise PackagingError(
            f"The package {name} of this dato-dist cannot be found, so no wheel of it can be "
            "built for the cluster. Install dato-dist with pip (pip install dato-dist-*.whl, "
            "or pip install -e . in a checkout).")
    return Path(list(spec.submodule_search_locations)[0])


def _distribution():
    """The installed distribution of this dato_dist: the first on sys.path of its version
    (a checkout's ``dato_dist.egg-info`` counts: its PKG-INFO is the same metadata)."""
    found = []
    for dist in metadata.distributions(name=DIST_NAME):
        if dist.version == _version.__version__:
            return dist
        found.append(dist.version)
    raise PackagingError(
        f"This dato_dist ({_version.__version__}, {_package_dir('dato_dist')}) has no "
        f"installed distribution metadata of its version (found: {found or 'none'}), so no "
        "wheel of it can be built for the cluster. Install it with pip (pip install "
        "dato-dist-*.whl, or pip install -e . in a checkout) instead of putting its folder "
        "on sys.path.")


def _dist_info_name():
    return f"dato_dist-{_version.__version__}.dist-info"


def contents():
    """``{archive name: bytes}`` of the wheel without ``WHEEL`` and ``RECORD``."""
    files = {}
    locations = {name: _package_dir(name) for name in PACKAGES}
    for name, folder in locations.items():
        prefix = name.replace(".", "/")
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if (not path.is_file() or "__pycache__" in rel.parts or path.suffix == ".pyc"
                    or any(part.startswith(".") for part in rel.parts)):
                continue
            files[f"{prefix}/{rel.as_posix()}"] = path.read_bytes()
    dist = _distribution()
    info = _dist_info_name()
    for name in METADATA_FILES:
        text = dist.read_text(name)
        if text is None and name == "METADATA":
            text = dist.read_text("PKG-INFO")  # an egg-info's name for the same file
        if text is None:
            if name == "METADATA":
                raise PackagingError(f"The installed {DIST_NAME} {dist.version} has no "
                                     "METADATA file; reinstall it with pip.")
            continue
        files[f"{info}/{name}"] = text.encode()
    files[f"{info}/top_level.txt"] = b"dato_dist\n"
    return files


def content_hash(files=None):
    """A short sha256 of everything in the wheel: a changed install gives a new hash."""
    files = contents() if files is None else files
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(files[name]).digest())
    return digest.hexdigest()[:16]


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"


def _zip_bytes(files):
    info = _dist_info_name()
    files = dict(files)
    files[f"{info}/WHEEL"] = WHEEL_TEXT.encode()
    record = "".join(_record_line(n, files[n]) for n in sorted(files)) + f"{info}/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        # dist-info last, as the wheel spec recommends
        for name in sorted(files, key=lambda n: (n.startswith(info), n)):
            entry = zipfile.ZipInfo(name, date_time=_EPOCH)
            mode = 0o755 if name.endswith(".sh") else 0o644
            entry.external_attr = (0o100000 | mode) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, files[name])
        entry = zipfile.ZipInfo(f"{info}/RECORD", date_time=_EPOCH)
        entry.external_attr = 0o100644 << 16
        zf.writestr(entry, record)
    return buf.getvalue()


def wheel_name():
    return f"dato_dist-{_version.__version__}-py3-none-any.whl"


def build(cache_dir=None):
    """The wheel of the running dato-dist; built once per content hash, then reused.

    Parameters
    ----------
    cache_dir : path, optional
        Where wheels are kept (default ``<cache_root()>/wheels``); created ``0700``.

    Returns
    -------
    pathlib.Path
        ``<cache_dir>/<content hash>/dato_dist-<version>-py3-none-any.whl``. The folder's
        name is :func:`content_hash`.

    Raises
    ------
    PackagingError
        This dato_dist was not installed by pip (no distribution metadata of its version).
    """
    files = contents()
    key = content_hash(files)
    root = _private_dir(Path(cache_dir) if cache_dir else cache_root() / "wheels")
    folder = _private_dir(root / key)
    path = folder / wheel_name()
    if path.is_file():
        return path
    data = _zip_bytes(files)
    fd, tmp = tempfile.mkstemp(prefix=".wheel-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # concurrent builders write the same bytes
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    log.info("Built %s (%d files, hash %s)", path, len(files) + 2, key)
    return path


__all__ = ["build", "content_hash", "contents", "cache_root", "PACKAGES"]
