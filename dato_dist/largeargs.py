"""Large ``bytes`` arguments, kept out of the tasks file and read by the runner itself.

A map job whose tasks carry a ``bytes`` value of :data:`LARGE_ARGUMENT` or more writes
those values, one after the other and unframed, to the job's ``args.bin``; the tasks file
holds, for each task, the pickle of its other kwargs (each large value ``None`` in it) and
one reference ``(name, offset, length, SHA-256 of the value)`` per large value. The tasks
file is signed with the job's key as every pickled file is, so the digests it lists are
the proof of origin of ``args.bin``: a value is used only once its SHA-256 matches.

On a local store nothing of ``args.bin`` passes through the driver: a runner gets the
references and the file's path (:class:`LargeArgs`), reads each value with one
``os.pread`` from the page cache the client's write left it in (one copy, into the
``bytes`` object the task receives) and checks its digest. On a remote store the driver
reads the file, checks every digest and sends the values themselves.
"""

import hashlib
import hmac
import os
import pickle
import threading

from .errors import UntrustedStoreFile

#: A ``bytes`` argument of this many bytes or more goes to ``args.bin``.
LARGE_ARGUMENT = 256 * 1024
#: The tasks file's kind for such a job.
KIND = "large"


def is_large(value):
    """True for a value that travels through ``args.bin``."""
    return type(value) is bytes and len(value) >= LARGE_ARGUMENT


def split(task_kwargs, dumps):
    """``(rests, refs, values)`` for ``task_kwargs``: each task's kwargs pickled by
    ``dumps(kwargs, i)`` with its large values ``None``, each task's references
    ``[name, offset, length]`` (the digest is appended by :func:`add_digests`), and the
    large values themselves (the user's own objects, not copies), in file order."""
    rests, refs, values = [], [], []
    offset = 0
    for i, kwargs in enumerate(task_kwargs):
        names = [k for k, v in kwargs.items() if is_large(v)]
        task_refs = []
        for name in names:
            value = kwargs[name]
            task_refs.append([name, offset, len(value)])
            values.append(value)
            offset += len(value)
        rests.append(dumps(dict(kwargs, **dict.fromkeys(names)) if names else kwargs, i))
        refs.append(task_refs)
    return rests, refs, values


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
            raise RuntimeError("the digests of the large arguments could not be computed")
        return out

    return result


def add_digests(refs, digests):
    """Append to each reference the digest of its value (``digests`` in file order)."""
    it = iter(digests)
    return [[(name, offset, length, next(it)) for name, offset, length in task]
            for task in refs]


def tasks_content(rests, refs, size):
    """The tasks file's content: plain data, loadable with no import."""
    return pickle.dumps((KIND, rests, refs, size), protocol=pickle.HIGHEST_PROTOCOL)


def check(value, digest, path, name):
    """``value`` if its SHA-256 is ``digest``, else :class:`UntrustedStoreFile`."""
    if not hmac.compare_digest(hashlib.sha256(value).digest(), digest):
        raise UntrustedStoreFile(path=path, reason=f"the bytes of argument '{name}' do not "
                                                   "match the digest the signed tasks file lists")
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
    """One task's kwargs whose large values are in ``args.bin``.

    ``rest`` is the pickle of the kwargs with each large value ``None``; ``refs`` the
    large values' ``(name, offset, length, digest)``; ``source`` where the values are:
    the local path of ``args.bin`` (read and checked by :meth:`load`), or the values
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
    (each made when asked for). ``source`` is the local path of ``args.bin``, or, for a
    remote store, the file's content (each value is checked when first handed out)."""

    __slots__ = ("rests", "refs", "source", "display", "_checked")

    def __init__(self, rests, refs, source, display):
        self.rests, self.refs, self.source, self.display = rests, refs, source, display
        self._checked = set()

    def __len__(self):
        return len(self.rests)

    def _task(self, i):
        refs = self.refs[i]
        if type(self.source) is str or not refs:
            return LargeArgs(self.rests[i], refs, self.source)
        view = memoryview(self.source)
        values = []
        for name, offset, length, digest in refs:
            value = bytes(view[offset:offset + length])
            if (i, name) not in self._checked:
                check(value, digest, self.display, name)
                self._checked.add((i, name))
            values.append(value)
        return LargeArgs(self.rests[i], refs, tuple(values))

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


def tasks_from(data, source, display):
    """:class:`LargeTasks` from a loaded tasks file ``data`` (of kind :data:`KIND`) and
    the ``source`` of its values (see :class:`LargeTasks`)."""
    _kind, rests, refs, size = data
    if type(source) is not str and len(source) != size:
        raise UntrustedStoreFile(path=display, reason=f"{len(source)} of its {size} bytes "
                                                      "are there")
    return LargeTasks(rests, refs, source, display)
