"""The kwargs of a map job's tasks in columns: one list per argument name.

A million tasks of ``{"x": ..., "y": ...}`` are two lists, not a million dicts: the client
pickles them in a few milliseconds, the driver holds them in a fraction of the memory and
sends a runner a slice of each list; the runner makes each task's dict as it runs it.
Used when every task has the same argument names (the common case); otherwise tasks
travel as a list of dicts, as before.
"""

import itertools
import operator
from array import array


class TaskColumns:
    """Tasks whose kwargs are ``dict(zip(names, row))`` for the rows of ``columns``.

    A sequence of kwargs dicts (each made when asked for); slicing gives another
    ``TaskColumns``, which is what travels to a runner.

    Examples
    --------
    >>> t = TaskColumns.of([{"x": 1, "y": 2}, {"x": 3, "y": 4}])
    >>> len(t), t[1], list(t[:1])
    (2, {'x': 3, 'y': 4}, [{'x': 1, 'y': 2}])
    """

    __slots__ = ("names", "columns", "count")

    def __init__(self, names, columns, count):
        self.names, self.columns, self.count = tuple(names), list(columns), count

    @classmethod
    def of(cls, task_kwargs):
        """The columns of ``task_kwargs`` (a list of dicts), or None when the dicts do not
        all have the same argument names. Every check runs at C speed."""
        if not task_kwargs or type(task_kwargs[0]) is not dict:
            return None
        names = tuple(task_kwargs[0])
        try:  # every name present and as many keys in all: the same names (order aside)
            if sum(map(len, task_kwargs)) != len(names) * len(task_kwargs):
                return None
            columns = [list(map(operator.itemgetter(name), task_kwargs)) for name in names]
        except (KeyError, TypeError, IndexError):
            return None
        return cls(names, columns, len(task_kwargs))

    def to_plain(self):
        """The tasks file's form: a tuple of plain data (no class to import)."""
        return ("columns", list(self.names), self.columns, self.count)

    @classmethod
    def from_plain(cls, data):
        _kind, names, columns, count = data
        return cls(names, columns, count)

    def __reduce__(self):
        return (TaskColumns, (self.names, self.columns, self.count))

    def __len__(self):
        return self.count

    def __iter__(self):
        if not self.names:
            return (dict() for _ in range(self.count))  # no argument: every task is {}
        return map(dict, map(zip, itertools.repeat(self.names), zip(*self.columns)))

    def __getitem__(self, key):
        if isinstance(key, slice):
            return TaskColumns(self.names, [c[key] for c in self.columns],
                               len(range(self.count)[key]))
        if not -self.count <= key < self.count:
            raise IndexError("task index out of range")
        return dict(zip(self.names, (c[key] for c in self.columns)))

    def take(self, indices):
        """The tasks at ``indices`` (a list of ints), as ``TaskColumns``."""
        return TaskColumns(self.names, [list(map(c.__getitem__, indices))
                                        for c in self.columns], len(indices))


class TaskNames:
    """The names ``<prefix>0 .. <prefix><n-1>`` as a sequence, each made when asked for
    (a million names as a list cost 70 MB)."""

    __slots__ = ("prefix", "count")

    def __init__(self, prefix, count):
        self.prefix, self.count = prefix, count

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [f"{self.prefix}{k}" for k in range(self.count)[i]]
        if not -self.count <= i < self.count:
            raise IndexError("task index out of range")
        return f"{self.prefix}{i % self.count}"

    def __iter__(self):
        return map(f"{self.prefix}{{}}".format, range(self.count))


class IndexSet:
    """A set of task indices ``0..n-1`` as one byte per task.

    A driver marks every finished task: a ``set`` of a million ints costs about 40 MB
    and a hash insert per task, while a batch of consecutive indices (the usual one) is a
    slice here, checked and marked at C speed. Indices outside ``0..n-1`` (the
    combiner's) are never members.

    Examples
    --------
    >>> s = IndexSet(10, [3])
    >>> s.update(range(5, 8)); len(s), 6 in s, s.isdisjoint([0, 1]), s.isdisjoint([7])
    (4, True, True, False)
    """

    __slots__ = ("_flags", "_count", "_iota")

    def __init__(self, n, indices=()):
        self._flags, self._count, self._iota = bytearray(n), 0, None
        self.update(indices)

    def run_of(self, indices):
        """``(a, b)`` when ``indices`` are ``a, a+1, .., b-1`` within ``0..n-1``, else None."""
        kind = type(indices)
        if kind is range:
            ok, a, b = indices.step == 1, indices.start, indices.stop
        elif kind is list or kind is array:
            if not indices:
                return 0, 0
            a = indices[0]
            b = a + len(indices)
            if not (0 <= a and indices[-1] == b - 1 and b <= len(self._flags)):
                return None
            if kind is list:
                ok = indices == list(range(a, b))
            else:  # compared with a slice of 0..n-1 as an array: a memcmp
                if self._iota is None or self._iota.typecode != indices.typecode:
                    self._iota = array(indices.typecode, range(len(self._flags)))
                ok = indices == self._iota[a:b]
        else:
            return None
        return (a, b) if ok and 0 <= a <= b <= len(self._flags) else None

    def __len__(self):
        return self._count

    def __contains__(self, index):
        return 0 <= index < len(self._flags) and self._flags[index] == 1

    def add(self, index):
        if 0 <= index < len(self._flags) and not self._flags[index]:
            self._flags[index] = 1
            self._count += 1

    def update(self, indices):
        run = self.run_of(indices)
        if run is None:
            for index in indices:
                self.add(index)
            return
        a, b = run
        self._count += (b - a) - self._flags.count(1, a, b)
        self._flags[a:b] = b"\x01" * (b - a)

    def isdisjoint(self, indices):
        run = self.run_of(indices)
        if run is not None:
            return self._flags.find(1, *run) < 0
        return not any(map(self.__contains__, indices))
