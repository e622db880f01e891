"""The kwargs of a map job's tasks in columns: one list per argument name.

A million tasks of ``{"x": ..., "y": ...}`` are two lists, not a million dicts: the client
pickles them in a few milliseconds, the driver holds them in a fraction of the memory and
sends a runner a slice of each list; the runner makes each task's dict as it runs it.
Used when every task has the same argument names (the common case); otherwise tasks
travel as a list of dicts, as before.
"""

import itertools
import operator


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
        try:  # same length and every name present: the same names (order aside)
            if set(map(len, task_kwargs)) != {len(names)}:
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
