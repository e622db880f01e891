"""The job store: the single source of truth for a job, on any ``pyarrow.fs`` filesystem.

A store is a root URI (a local path, ``file://``, ``hdfs://`` or ``s3://``); each job is a
folder under it. Only :mod:`pyarrow.fs` is used, so the same code serves every filesystem.

Writes are atomic: on filesystems with a rename (local, HDFS) a file is written under a
temporary name and moved into place; on object stores (S3) a single put is atomic already.
Binary files carry a small frame (magic, length, CRC-32) so a truncated or foreign file is
reported as :class:`~dato_dist.errors.CorruptStoreFile`, never read as a wrong result. Files
written with a key carry an HMAC-SHA256 instead of the CRC (bound to the file's path), and
are returned only when it verifies (:class:`~dato_dist.errors.UntrustedStoreFile` else):
what the store holds is never unpickled without proof of who wrote it.

Private by default: on the local disk, folders are made 0700 and files 0600 whatever the
umask, and a folder that belongs to another user is refused; job folders are created
exclusively (:meth:`Store.create_job_dir`), so a folder someone else made is never adopted.
"""

import contextlib
import hmac
import json
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from urllib.parse import urlparse

from . import keys
from .errors import (
    CorruptStoreFile,
    StoreError,
    StoreNotOwned,
    StoreUnreachable,
    UntrustedStoreFile,
)

log = logging.getLogger(__name__)

_PY_FS_LOCK = threading.RLock()
_MAGIC = b"DDS1"
_HEADER = struct.Struct(">4sQI")  # magic, payload length, crc32
_SIGNED_MAGIC = b"DDS2"
_SIGNED_HEADER = struct.Struct(">4sQ32s")  # magic, payload length, HMAC-SHA256
#: Name of the marker a job folder on a remote store is claimed with.
OWNER_MARKER = ".owner"
_OBJECT_STORES = {"s3", "gcs"}
#: Local files at least this large are written while their header is computed.
_OVERLAP_BYTES = 1024 * 1024
_LIST_RETRIES = 5  # a listing that races a folder being made is asked again


def header(payload, key=None, name=""):
    """The store's integrity header for ``payload``: a CRC-32, or with ``key`` an HMAC bound
    to ``name`` (the file's path under the store root)."""
    if key is None:
        return _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload))
    length = len(payload)
    return _SIGNED_HEADER.pack(_SIGNED_MAGIC, length, keys.mac(
        key, name, struct.pack(">Q", length), payload))


def header_of_parts(parts, key=None, name=""):
    """:func:`header` of the concatenation of ``parts`` (bytes-like), never concatenated."""
    length = sum(memoryview(p).nbytes for p in parts)
    if key is None:
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
        return _HEADER.pack(_MAGIC, length, crc)
    return _SIGNED_HEADER.pack(_SIGNED_MAGIC, length, keys.mac(
        key, name, struct.pack(">Q", length), *parts))


def frame(payload, key=None, name=""):
    """``payload`` with the store's integrity header in front."""
    return header(payload, key, name) + payload


def unframe(data, path, key=None, name=""):
    """The payload of a framed file, as a memoryview; raises :class:`CorruptStoreFile`
    naming ``path``, or with ``key`` :class:`UntrustedStoreFile` unless its HMAC verifies."""
    if key is not None:
        return _unframe_signed(data, path, key, name)
    if len(data) < _HEADER.size:
        raise CorruptStoreFile(path=path, reason=f"only {len(data)} bytes, shorter than its header")
    magic, length, crc = _HEADER.unpack_from(data)
    if magic == _SIGNED_MAGIC:
        raise UntrustedStoreFile(path=path, reason="it is signed and was read without a key")
    if magic != _MAGIC:
        raise CorruptStoreFile(path=path, reason="it does not start with the store's marker")
    payload = memoryview(data)[_HEADER.size:]
    if len(payload) != length:
        raise CorruptStoreFile(path=path, reason=f"{len(payload)} of {length} bytes present")
    if zlib.crc32(payload) != crc:
        raise CorruptStoreFile(path=path, reason="checksum mismatch")
    return payload  # a view: no copy of what may be hundreds of MB


def _unframe_signed(data, path, key, name):
    if len(data) < _SIGNED_HEADER.size or bytes(data[:4]) != _SIGNED_MAGIC:
        raise UntrustedStoreFile(path=path, reason="it carries no signature")
    _magic, length, tag = _SIGNED_HEADER.unpack_from(data)
    payload = memoryview(data)[_SIGNED_HEADER.size:]
    if len(payload) != length:
        raise CorruptStoreFile(path=path, reason=f"{len(payload)} of {length} bytes present")
    if not hmac.compare_digest(tag, keys.mac(key, name, struct.pack(">Q", length), payload)):
        raise UntrustedStoreFile(path=path, reason="its signature does not match")
    return payload


def filesystem_from_uri(uri):
    """``(pyarrow filesystem, path)`` for a URI or a plain local path."""
    import pyarrow.fs as pafs

    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = os.path.abspath(os.path.expanduser(parsed.path if parsed.scheme else uri))
        return pafs.LocalFileSystem(), path
    if parsed.scheme == "hdfs":
        from .hdfs import hdfs_filesystem  # resolved lazily: libhdfs or a native client

        return hdfs_filesystem(uri)
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise StoreUnreachable(uri=uri, cause=e) from None
    return fs, path


def _with_retries(what, fn, retries):
    """Run ``fn``; retry an ``OSError`` ``retries`` times with back-off, then raise ours."""
    delay = 0.1
    for attempt in range(retries + 1):
        try:
            return fn()
        except (FileNotFoundError, CorruptStoreFile):
            raise
        except OSError as e:
            if attempt == retries:
                raise StoreError(f"{what} failed after {retries + 1} attempts: {e}") from e
            log.warning("%s failed (%s); retrying in %.1f s", what, e, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


#: Seconds an exclusive create on S3 waits before it reads its object back a second time.
CLAIM_SETTLE = 1.0


class Store:
    """A folder tree on a ``pyarrow.fs`` filesystem with atomic, checked reads and writes.

    Parameters
    ----------
    uri : str
        Root of the store: a local path, ``file://...``, ``hdfs://...`` or ``s3://...``.
    write_retries : int
        Times a failing write is retried before :class:`StoreError` is raised.

    Examples
    --------
    >>> s = Store("/tmp/jobs")
    >>> s.write_json("a/state.json", {"status": "Running"})
    >>> s.read_json("a/state.json")["status"]
    'Running'
    """

    def __init__(self, uri, *, write_retries=3, filesystem=None):
        self.uri = uri
        self.write_retries = write_retries
        if filesystem is not None:
            self.fs, self.root = filesystem, uri
        else:
            self.fs, self.root = filesystem_from_uri(uri)
        self.root = self.root.rstrip("/") or "/"
        self._atomic_put = self.fs.type_name in _OBJECT_STORES
        # Filesystems implemented in Python (hdfs-native through PyFileSystem) are used by
        # one thread at a time in a process: a driver and its log shipper share the client.
        import pyarrow.fs as pafs

        self._lock = (_PY_FS_LOCK if isinstance(self.fs, pafs.PyFileSystem)
                      else contextlib.nullcontext())

    def __repr__(self):
        return f"Store<{self.uri}>"

    def path(self, rel):
        """The filesystem path of ``rel`` (a '/'-separated path under the root)."""
        return f"{self.root}/{rel}" if rel else self.root

    def local_path(self, rel):
        """An OS path for ``rel`` when the store is on the local disk, else None."""
        return self.path(rel) if self.fs.type_name == "local" else None

    def display_path(self, rel):
        """``rel`` as a user would type it: a local path or a URI."""
        if self.fs.type_name == "local":
            return self.path(rel)
        base = self.uri.rstrip("/")
        return f"{base}/{rel}" if rel else base

    def check(self):
        """Raise :class:`StoreUnreachable` unless the root can be created and listed, and
        :class:`StoreNotOwned` if a local root belongs to another user."""
        import pyarrow.fs as pafs

        try:
            if self.fs.type_name == "local":
                private_dirs(self.root)
            else:
                self.fs.create_dir(self.root, recursive=True)
            self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        except OSError as e:
            raise StoreUnreachable(uri=self.uri, cause=e) from None
        self.check_owner()

    def check_owner(self, rel=""):
        """:class:`StoreNotOwned` if ``rel`` is a local folder of another user (anyone who
        owns a folder can change what is in it); other filesystems rely on their own
        permissions (see docs/architecture.md, "Trust")."""
        path = self.local_path(rel)
        if path is None:
            return
        try:
            uid = os.stat(path).st_uid
        except FileNotFoundError:
            return
        if uid != os.geteuid():
            raise StoreNotOwned(path=path, owner=_user_name(uid))

    def create_job_dir(self, rel, nonce):
        """Create the folder ``rel`` for a new job, only if nothing is there yet; True if
        this call made it (and so this user owns it), False if it existed.

        Local: an exclusive ``mkdir`` (0700). Elsewhere: the folder must not exist, and is
        claimed with a marker holding ``nonce`` that must read back as ours (HDFS: created
        with overwrite off, and the folder is made owner-only).
        """
        import pyarrow.fs as pafs

        target = self.path(rel)
        if self.fs.type_name == "local":
            private_dirs(self.root)
            self.check_owner()
            try:
                os.mkdir(target, 0o700)
            except FileExistsError:
                return False
            os.chmod(target, 0o700)
            return True
        with self._lock:
            if self.fs.get_file_info(target).type != pafs.FileType.NotFound:
                return False
            self.fs.create_dir(target, recursive=True)
            _owner_only(self.fs, target)
            return _create_exclusive(self.fs, f"{target}/{OWNER_MARKER}", nonce.encode())

    def create_exclusive(self, rel, data):
        """Write ``data`` at ``rel`` only if nothing is there; True if this call wrote it.

        Local: written under a temporary name, then hard-linked to ``rel`` (the link fails
        if ``rel`` exists, so a reader never sees it half-written). HDFS (hdfs-native):
        created with overwrite off. S3 (no create-if-absent through pyarrow): written if
        absent, then read back at once and again :data:`CLAIM_SETTLE` s later: of racers
        whose checks all came before the others' writes, only the last writer still reads
        its own data then.
        """
        target = self.path(rel)
        parent = target.rsplit("/", 1)[0]
        if self.fs.type_name == "local":
            tmp = f"{parent}/.{target.rsplit('/', 1)[1]}.{uuid.uuid4().hex[:8]}.tmp"
            _put_private(parent, tmp, (data,))
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            return True
        with self._lock:
            self.fs.create_dir(parent, recursive=True)
            if not _create_exclusive(self.fs, target, data):
                return False
            if _native_hdfs(self.fs) is not None:
                return True
        time.sleep(CLAIM_SETTLE)  # a racer that checked before our write writes within it
        return self.read_bytes(rel, framed=False) == data

    # -- writing -------------------------------------------------------------------------
    def write_bytes(self, rel, data, *, framed=True, key=None):
        """Write ``data`` to ``rel`` atomically (framed for integrity unless told not to;
        signed with ``key`` if given). ``data`` is bytes-like, or a list of bytes-like
        parts written one after the other (never joined in memory)."""
        data = list(data) if isinstance(data, (list, tuple)) else [data]
        size = sum(memoryview(p).nbytes for p in data)
        target = self.path(rel)
        parent = target.rsplit("/", 1)[0]
        # A large local file is written while its header is computed (the HMAC releases
        # the GIL), and the header goes in front last; elsewhere the header comes first.
        overlap = framed and self.fs.type_name == "local" and size >= _OVERLAP_BYTES
        parts = data if not framed or overlap else [header_of_parts(data, key, rel)] + data

        def put():
            with self._lock:
                put_unlocked()

        def put_unlocked():
            if overlap:
                return _put_private(parent, target, parts, header_of=lambda: header_of_parts(
                    data, key, rel), header_size=_header_size(key))
            if self.fs.type_name == "local":
                return _put_private(parent, target, parts)
            self.fs.create_dir(parent, recursive=True)
            if self._atomic_put:
                with self.fs.open_output_stream(target) as out:
                    for part in parts:
                        out.write(part)
                return
            tmp = f"{parent}/.{target.rsplit('/', 1)[1]}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                with self.fs.open_output_stream(tmp) as out:
                    for part in parts:
                        out.write(part)
                self._replace(tmp, target)
            except BaseException:
                try:
                    self.fs.delete_file(tmp)
                except OSError:
                    pass
                raise

        _with_retries(f"Writing {self.display_path(rel)}", put, self.write_retries)

    def _replace(self, tmp, target):
        client = _native_hdfs(self.fs)
        if client is not None:  # one atomic rename over the old version: readers see no gap
            _native_rename_over(client, tmp, target)
            return
        # pyarrow's HDFS renames refuse to overwrite: remove the old version first (readers
        # re-read in that gap: _read_renamed).
        try:
            self.fs.move(tmp, target)
        except OSError:
            self.fs.delete_file(target)
            self.fs.move(tmp, target)

    def write_json(self, rel, obj):
        """Write ``obj`` as JSON to ``rel`` atomically, one top-level key per line (readable
        by operators, and encoded by json's C encoder, which ``indent`` would turn off)."""
        if isinstance(obj, dict):
            text = "{\n" + ",\n".join(
                f" {json.dumps(str(key))}: {json.dumps(value, sort_keys=True)}"
                for key, value in sorted(obj.items())) + "\n}"
        else:
            text = json.dumps(obj, sort_keys=True)
        self.write_bytes(rel, text.encode(), framed=False)

    # -- reading -------------------------------------------------------------------------
    def read_bytes(self, rel, *, framed=True, key=None):
        """The content of ``rel``: bytes, or a memoryview of a framed file's payload (what
        ``pickle.loads`` takes, with no copy); ``FileNotFoundError`` if missing,
        ``CorruptStoreFile`` if bad, with ``key`` ``UntrustedStoreFile`` unless signed with it."""
        data = self._read(rel, _frame_is_whole if framed else None)
        return unframe(data, self.display_path(rel), key, rel) if framed else data

    def _read(self, rel, is_whole=None):
        """The whole content of ``rel`` as one version of it (see :meth:`_read_whole`)."""
        target = self.path(rel)

        def get():
            with self._lock:
                return self._read_whole(target, is_whole)

        return _with_retries(f"Reading {self.display_path(rel)}", get, self.write_retries)

    def _read_whole(self, target, is_whole=None):
        """The whole content of ``target`` as one version of it: the old or the new content
        of a file being replaced, never a mix, and never "missing" in a replacement's gap.
        ``is_whole(data)`` says whether content shows by its own structure that it is one
        whole version (which spares an object store's second look at the version)."""
        if self.fs.type_name == "local":  # os.replace is atomic; an open file keeps its inode
            with self.fs.open_input_file(target) as f:
                return f.read()
        if self._atomic_put:
            return _read_object(self.fs, target, is_whole)
        return _read_renamed(self.fs, target)

    def read_json(self, rel, default=FileNotFoundError):
        """Parsed JSON from ``rel``; ``default`` when missing (raises when not given)."""
        for attempt in range(self.write_retries + 1):
            try:
                # A JSON object is whole when it parses (a torn read is a strict prefix of
                # the new version: its outer brace is open); a re-read checks the version.
                data = self._read(rel, _looks_like_json_object if attempt == 0 else None)
            except FileNotFoundError:
                if default is FileNotFoundError:
                    raise
                return default
            try:
                return json.loads(data)
            except ValueError as e:
                # A file that is still not JSON after re-reads of one version was written
                # bad: it is corrupt.
                if attempt == self.write_retries:
                    raise CorruptStoreFile(path=self.display_path(rel),
                                           reason=f"not JSON: {e}") from None
                time.sleep(0.05 * (attempt + 1))

    def exists(self, rel):
        import pyarrow.fs as pafs

        with self._lock:
            return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def list(self, rel):
        """Names (not paths) of the entries directly under ``rel``, sorted; [] if missing."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path(rel), allow_not_found=True)
        for attempt in range(_LIST_RETRIES):
            try:
                with self._lock:
                    infos = self.fs.get_file_info(selector)
                break
            except (NotADirectoryError, FileNotFoundError):
                # Both listings ask twice, so a folder made between the two questions
                # (results/ by a running driver) fails them; asked again, it is there.
                # pyarrow's local listing: "list it" (missing), then "there?" (yes).
                # pyarrow's FSSpecHandler (hdfs-native): "a folder?" (no), "there?" (yes).
                if attempt == _LIST_RETRIES - 1:
                    raise
        return sorted(i.base_name for i in infos if not i.base_name.startswith("."))

    def delete(self, rel):
        """Remove ``rel`` (a file or a whole folder); missing is fine."""
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.path(rel))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path(rel))
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path(rel))


def _user_name(uid):
    import pwd

    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def private_dirs(path):
    """Make the local folder ``path`` and its missing parents 0700, whatever the umask."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        private_dirs(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    os.chmod(path, 0o700)


def _header_size(key):
    return _HEADER.size if key is None else _SIGNED_HEADER.size


def _put_private(parent, target, parts, header_of=None, header_size=0):
    """Write a local file 0600 (whatever the umask) under a temporary name, then rename.
    With ``header_of``, ``header_size`` bytes are left in front, filled with what
    ``header_of()`` returns, which runs in a thread while ``parts`` are written."""
    private_dirs(parent)
    tmp = f"{parent}/.{target.rsplit('/', 1)[1]}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.fchmod(fd, 0o600)
        result = []
        worker = None
        if header_of is not None:
            worker = threading.Thread(target=lambda: result.append(header_of()),
                                      name="store-header", daemon=True)
            worker.start()
        with open(fd, "wb", closefd=False) as out:
            if worker is not None:
                out.seek(header_size)
            for part in parts:
                out.write(part)
        if worker is not None:
            worker.join()
            if not result or len(result[0]) != header_size:
                raise StoreError(f"Could not compute the header of {target}.")
            os.pwrite(fd, result[0], 0)
        os.close(fd)
        fd = None
        os.replace(tmp, target)  # atomic, overwrites
    except BaseException:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


#: Times a read is repeated when the file changed while it was read, or was missing in
#: the gap of a replacement that deletes the old file before renaming the new one.
_CONSISTENT_READ_TRIES = 20
_REREAD_PAUSE = 0.01


def _read_object(fs, path, is_whole=None):
    """An object of an object store (S3) read as one version.

    pyarrow reads an object as a HEAD (its size and ETag) then ranged GETs, so a read that
    straddles a replacement gets a prefix of the new object with the old one's length (or
    all of a shorter new one). The ETag is read again after the GETs: the content is
    returned only when both name the version that was read, else it is read again. Content
    of the size the HEAD gave that ``is_whole`` accepts needs no second look: a prefix of
    a longer version fails it (a frame's length, a JSON object's closing brace), and a
    version of the same size is read whole.
    """
    for _ in range(_CONSISTENT_READ_TRIES):
        with fs.open_input_file(path) as f:
            before = _etag(f)
            size = f.size()
            data = f.read()
        if is_whole is not None and len(data) == size and is_whole(data):
            return data
        if before is None:
            return data  # a store that gives no ETag: nothing to compare
        try:
            with fs.open_input_file(path) as f:
                after = _etag(f)
        except FileNotFoundError:
            after = None  # deleted just after it was read: read again to say so
        if after == before and len(data) == size:
            return data
        log.debug("%s changed while it was read; reading it again", path)
        time.sleep(_REREAD_PAUSE)
    raise OSError(f"{path} changed while it was read, {_CONSISTENT_READ_TRIES} times in a "
                  "row: something rewrites it continuously")


def _frame_is_whole(data):
    """Whether ``data`` is as long as its frame's header says."""
    for magic, head in ((_MAGIC, _HEADER), (_SIGNED_MAGIC, _SIGNED_HEADER)):
        if len(data) >= head.size and bytes(data[:4]) == magic:
            return head.unpack_from(data)[1] == len(data) - head.size
    return False  # no frame: the ETag decides, then unframe says what is wrong


def _looks_like_json_object(data):
    """Whether ``data`` is a JSON object, ``{`` to its closing ``}``."""
    try:
        return isinstance(json.loads(data), dict)
    except ValueError:
        return False


def _etag(f):
    try:
        metadata = f.metadata() or {}
    except (OSError, NotImplementedError):
        return None
    return metadata.get("ETag") or metadata.get(b"ETag")


def _read_renamed(fs, path):
    """A file of a filesystem whose replacements rename (HDFS) read as one version.

    A replacement may delete the old file before it renames the new one into place (HDFS
    through libhdfs cannot rename over a file): a file found missing (before or while it is
    read) while the file or a temporary of it is in its folder is read again. A closed HDFS
    file's blocks never change, so what is read whole is one version. Other errors are
    the caller's to retry (``_with_retries``).
    """
    for attempt in range(_CONSISTENT_READ_TRIES):
        try:
            with fs.open_input_file(path) as f:
                return f.read()
        except FileNotFoundError:
            if attempt == _CONSISTENT_READ_TRIES - 1 or not _being_replaced(fs, path):
                raise
        time.sleep(_REREAD_PAUSE * (attempt + 1))


def _being_replaced(fs, path):
    """Whether ``path`` exists after all, or a temporary of its replacement is beside it."""
    import pyarrow.fs as pafs

    parent, name = path.rsplit("/", 1)
    infos = fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    tmp_prefix = f".{name}."
    return any(i.base_name == name or (i.base_name.startswith(tmp_prefix)
                                       and i.base_name.endswith(".tmp")) for i in infos)


def _native_hdfs(fs):
    """The ``hdfs_native.Client`` behind a PyFileSystem, or None."""
    import pyarrow.fs as pafs

    if not isinstance(fs, pafs.PyFileSystem):
        return None
    native = getattr(fs.handler, "fs", None)
    return getattr(native, "client", None)


def _native_rename_over(client, tmp, target):
    try:
        client.rename(tmp, target, overwrite=True)
    except OSError:
        raise
    except Exception as e:  # hdfs-native's own errors: ours retries OSErrors
        raise OSError(f"renaming {tmp} to {target} failed: {e}") from e


def _owner_only(fs, path):
    """Make an HDFS folder readable by its owner only (S3 relies on the bucket's policy)."""
    client = _native_hdfs(fs) if fs.type_name != "s3" else None
    if client is None:
        if fs.type_name == "hdfs":  # pyarrow's HadoopFileSystem has no chmod
            log.warning("Cannot make %s owner-only with this HDFS client; set "
                        "fs.permissions.umask-mode to 077 for jobs to be private.", path)
        return
    client.set_permission(path, 0o700)


def _create_exclusive(fs, path, data):
    """Write ``data`` at ``path`` only if nothing is there; True if ours is what is there."""
    client = _native_hdfs(fs)
    if client is not None:
        from hdfs_native import WriteOptions

        try:
            with client.create(path, WriteOptions(overwrite=False)) as out:
                out.write(data)
        except Exception:  # hdfs-native's already-exists error is not an OSError subclass
            return False
        return True
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        return False
    with fs.open_output_stream(path) as out:
        out.write(data)
    # S3 (through pyarrow) has no create-if-absent: a concurrent claimer's write is seen on
    # the read back (S3 reads are strongly consistent), and the loser gives the name up.
    with fs.open_input_file(path) as f:
        return f.read() == data
