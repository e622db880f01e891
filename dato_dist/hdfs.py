"""HDFS as a ``pyarrow.fs`` filesystem, with or without libhdfs.

``pyarrow.fs.HadoopFileSystem`` needs ``libhdfs.so`` (shipped with Hadoop's binary
distribution, present on most edge nodes). Where it cannot load, the ``hdfs-native``
client (HDFS RPC in Rust, no JVM) is wrapped for pyarrow with ``PyFileSystem``.
"""

import logging
from urllib.parse import urlparse

from .errors import BackendUnavailable, StoreUnreachable

log = logging.getLogger(__name__)


def hdfs_filesystem(uri):
    """``(filesystem, path)`` for an ``hdfs://host:port/path`` URI."""
    import pyarrow.fs as pafs

    parsed = urlparse(uri)
    path = parsed.path or "/"
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path
    except (OSError, ValueError) as e:
        log.debug("pyarrow.fs.HadoopFileSystem unavailable (%s); trying hdfs-native", e)
    try:
        from hdfs_native.fsspec import HdfsFileSystem
    except ImportError as e:
        raise BackendUnavailable(backend="HDFS", extra="yarn", cause=e) from None
    try:
        native = HdfsFileSystem(host=parsed.hostname, port=parsed.port)
    except Exception as e:  # hdfs-native raises its own types for connection problems
        raise StoreUnreachable(uri=uri, cause=e) from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(native)), path
