"""Serialization of functions, arguments and results.

cloudpickle handles what plain pickle cannot (lambdas, closures, ``__main__`` classes), but
costs a few microseconds more per call; plain data (numbers, strings, bytes and containers
of them), the bulk of tiny tasks' arguments and results, goes through the C pickler.
Both produce ordinary pickles: ``loads`` reads either.
"""

import io
import pickle

import cloudpickle


class _NotPlain(Exception):
    pass


class _PlainPickler(pickle.Pickler):
    """The C pickler, refusing anything but plain data: it calls ``reducer_override`` for
    every object that is not an exact None, bool, int, float, str, bytes, bytearray, list,
    tuple, dict, set or frozenset, so plain data pickles at full C speed."""

    def reducer_override(self, obj):
        raise _NotPlain(type(obj).__name__)


def dumps_plain(obj):
    """``obj`` pickled if it is plain data (see :class:`_PlainPickler`), else None."""
    buf = io.BytesIO()
    try:
        _PlainPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    except _NotPlain:
        return None
    return buf.getvalue()


def is_plain(obj):
    """True if ``obj`` is plain data: safe to unpickle anywhere, with no import."""
    return dumps_plain(obj) is not None


def dumps(obj):
    """Pickle ``obj``: the C pickler for plain data, cloudpickle for everything else."""
    data = dumps_plain(obj)
    return data if data is not None else cloudpickle.dumps(obj)


loads = pickle.loads
