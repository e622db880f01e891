"""Large ``bytes`` arguments, kept out of the tasks file and read by the runner itself.

A map job whose tasks carry a ``bytes`` value of :data:`LARGE_ARGUMENT` or more writes
those values raw to chunk files ``args/NNNNNN.bin`` (consecutive tasks, about
:data:`CHUNK_BYTES` each; a task's values are all in one chunk), each followed by a signed
``args/NNNNNN.pkl`` listing the SHA-256 of every value in it. The tasks file holds, for
each task, the pickle of its other kwargs (each large value ``None`` in it) and one
reference ``(name, offset, length, position)`` per large value. The signed index is the
proof of origin of a chunk: a value is used only once its SHA-256 matches.

On a local store nothing of the values passes through the driver: a runner gets the
references, their digests and the chunk's path (:class:`LargeArgs`), reads each value with
one ``os.pread`` from the page cache the client's write left it in (one copy, into the
``bytes`` object the task receives) and checks its digest. On a remote store the driver
reads a chunk in one request, checks its digests and sends the values themselves.

Chunks let a local job start before its arguments are all written: the driver is told
"go" once the tasks file and spec are written, and hands out a task once its chunk's
index is there (:meth:`LargeTasks._digests` waits for it, bounded by
:data:`CHUNK_WAIT`); ``map_job.create`` returns once the last chunk is in the store.
"""

import bisect
import hashlib
import hmac
import os
import pickle
import threading
import time

from .errors import StoreError, UntrustedStoreFile

#: A ``bytes`` argument of this many bytes or more goes to a chunk file.
LARGE_ARGUMENT = 256 * 1024
#: The tasks file's kind for such a job.
KIND = "large"
#: A chunk is closed once it holds this many bytes of values.
CHUNK_BYTES = 16 * 1024 * 1024
#: Seconds the driver waits for the next chunk while the client writes them, before it
#: gives up (the client died mid-create).
CHUNK_WAIT = 60.0
_POLL = 0.002


def is_large(value):
    """True for a value that travels through a chunk file."""
    return type(value) is bytes and len(value) >= LARGE_ARGUMENT


class Plan:
    """What :func:`split` makes of a parameter set: each task's other kwargs pickled
    (``rests``), its references ``(name, offset, length, position)`` into its chunk
    (``refs``), the first task of each chunk (``starts``) and each chunk's values, the
    user's own objects, not copies (``chunks``)."""

    __slots__ = ("rests", "refs", "starts", "chunks")

    def __init__(self, rests, refs, starts, chunks):
        self.rests, self.refs, self.starts, self.chunks = rests, refs, starts, chunks

    def tasks_content(self):
        """The tasks file's content: plain data, loadable with no import."""
        return pickle.dumps((KIND, self.rests, self.refs, self.starts),
                            protocol=pickle.HIGHEST_PROTOCOL)


def split(task_kwargs, dumps, chunk_bytes=CHUNK_BYTES):
    """The :class:`Plan` of ``task_kwargs``; ``dumps(kwargs, i)`` pickles task ``i``'s
    kwargs (its large values ``None``)."""
    rests, refs, starts, chunks = [], [], [], []
    values, offset = None, 0
    for i, kwargs in enumerate(task_kwargs):
        names = [k for k, v in kwargs.items() if is_large(v)]
        if not starts or (names and offset >= chunk_bytes):  # a new chunk
            starts.append(i)
            values, offset = [], 0
            chunks.append(values)
        task_refs = []
        for name in names:
            value = kwargs[name]
            task_refs.append((name, offset, len(value), len(values)))
            values.append(value)
            offset += len(value)
        rests.append(dumps(dict(kwargs, **dict.fromkeys(names)) if names else kwargs, i))
        refs.append(task_refs)
    return Plan(rests, refs, starts, chunks)


def digests_in_background(values):
    """Start computing the SHA-256 of each of ``values`` in a thread (hashlib releases the
    GIL, so the file is written meanwhile); the returned function joins it and returns
    the digests."""
    out = []
    worker = threading.Thread(target=lambda: out.extend(
        hashlib.sha256(v).digest() for v in values), name="args-digests", daemon=True)
    worker.start()

    def result():
        worker.join()
        if len(out) != len(values):
            raise StoreError("The digests of the large arguments could not be computed "
                             "(see the error above); nothing of the job was kept.")
        return out

    return result


def check(value, digest, path, name):
    """``value`` if its SHA-256 is ``digest``, else :class:`UntrustedStoreFile`."""
    if not hmac.compare_digest(hashlib.sha256(value).digest(), digest):
        raise UntrustedStoreFile(path=path, reason=f"the bytes of argument '{name}' do not "
                                                   "match the digest its signed index lists")
    return value


def _pread(fd, length, offset):
    value = os.pread(fd, length, offset)  # one copy: page cache -> the bytes object
    if len(value) == length:
        return value
    pieces = [value]  # a short read (a value over 2 GiB, or a truncated file)
    got = len(value)
    while got < length:
        piece = os.pread(fd, length - got, offset + got)
        if not piece:
            break
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)


class LargeArgs:
    """One task's kwargs whose large values are in a chunk file.

    ``rest`` is the pickle of the kwargs with each large value ``None``; ``refs`` the
    large values' ``(name, offset, length, digest)``; ``source`` where the values are:
    the chunk's local path (read and checked by :meth:`load`), or the values
    themselves, checked already by whoever read them (the driver).

    Examples
    --------
    >>> t = LargeArgs(pickle.dumps({"x": 1}), (), None)
    >>> t.load()
    {'x': 1}
    """

    __slots__ = ("rest", "refs", "source")

    def __init__(self, rest, refs, source):
        self.rest, self.refs, self.source = rest, refs, source

    def __reduce__(self):
        return (LargeArgs, (self.rest, self.refs, self.source))

    def __len__(self):
        """The bytes this task's kwargs come to (what a batch is sized by)."""
        return len(self.rest) + sum(ref[2] for ref in self.refs)

    def load(self):
        """The task's kwargs, a fresh copy at each call (a retry sees no earlier change)."""
        kwargs = pickle.loads(self.rest)
        if not self.refs:
            return kwargs
        if type(self.source) is str:
            fd = os.open(self.source, os.O_RDONLY | os.O_CLOEXEC)
            try:
                for name, offset, length, digest in self.refs:
                    kwargs[name] = check(_pread(fd, length, offset), digest, self.source, name)
            finally:
                os.close(fd)
        else:
            for (name, *_), value in zip(self.refs, self.source):
                kwargs[name] = value
        return kwargs


class LargeTasks:
    """The tasks of a job with large arguments, as a sequence of :class:`LargeArgs`
    (each made when asked for) read through ``files`` (the job's
    :class:`~dato_dist.jobfiles.JobFiles`): on a local store each names its chunk's
    path, elsewhere it carries its values (read here, a chunk at a time, and checked).
    A task is made once its chunk's signed index is in the store: a driver, whose client
    may still be writing the chunks, waits ``wait`` seconds for the next one (see
    :data:`CHUNK_WAIT`); anyone else (``wait`` 0) is told at once that it is missing."""

    __slots__ = ("files", "rests", "refs", "starts", "wait", "_index", "_chunk", "_last")

    def __init__(self, files, data, wait=0.0):
        _kind, self.rests, self.refs, self.starts = data
        self.files, self.wait = files, wait
        self._index = {}  # chunk -> its digests, once verified
        self._chunk = (None, None)  # the remote chunk in hand: (number, bytes)
        self._last = time.monotonic()

    def __len__(self):
        return len(self.rests)

    def _digests(self, k):
        found = self._index.get(k)
        if found is not None:
            return found
        deadline = max(self._last, time.monotonic()) + self.wait
        while True:
            try:
                found = self.files.read_args_index(k)  # verified with the job's key
                break
            except FileNotFoundError:
                if time.monotonic() >= deadline:
                    waited = f" after {self.wait:.0f} s" if self.wait else ""
                    raise StoreError(
                        f"The job's arguments are incomplete: "
                        f"{self.files.args_display(k, 'pkl')} is not there{waited} (the "
                        "client that created the job died while writing them?). Create "
                        "the job again.") from None
                time.sleep(_POLL)
        self._last = time.monotonic()
        self._index[k] = found
        return found

    def _task(self, i):
        refs = self.refs[i]
        if not refs:
            return LargeArgs(self.rests[i], (), None)
        k = bisect.bisect_right(self.starts, i) - 1
        digests = self._digests(k)
        refs = tuple((name, offset, length, digests[pos])
                     for name, offset, length, pos in refs)
        path = self.files.args_local_path(k)
        if path is not None:
            return LargeArgs(self.rests[i], refs, path)
        if self._chunk[0] != k:
            self._chunk = (None, None)  # one chunk in memory at a time
            self._chunk = (k, self.files.read_args_chunk(k))
        view = memoryview(self._chunk[1])
        display = self.files.args_display(k, "bin")
        values = tuple(check(view[offset:offset + length], digest, display, name).tobytes()
                       for name, offset, length, digest in refs)
        return LargeArgs(self.rests[i], refs, values)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [self._task(i) for i in range(len(self.rests))[key]]
        return self._task(range(len(self.rests))[key])

    def __iter__(self):
        return map(self._task, range(len(self.rests)))

    def largest(self):
        """The most bytes one task's kwargs come to (see :meth:`LargeArgs.__len__`)."""
        return max(len(rest) + sum(ref[2] for ref in refs)
                   for rest, refs in zip(self.rests, self.refs))
