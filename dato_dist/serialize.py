"""Serialization of functions, arguments and results.

cloudpickle handles what plain pickle cannot (lambdas, closures, ``__main__`` classes), but
costs a few microseconds more per call; plain data (numbers, strings, bytes and containers
of them), the bulk of tiny tasks' arguments and results, goes through the C pickler.
Both produce ordinary pickles: ``loads`` reads either.
"""

import pickle

import cloudpickle

_SCALARS = (int, float, str, bytes, bool, type(None), complex)
_CONTAINERS = (list, tuple, set, frozenset)
_MAX_CHECKED = 256  # items inspected before giving up on the fast path


def _is_plain(obj):
    stack, seen = [obj], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > _MAX_CHECKED:
            return False
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind in _CONTAINERS:
            stack.extend(item)
        elif kind is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            return False
    return True


def dumps(obj):
    """Pickle ``obj``: the C pickler for plain data, cloudpickle for everything else."""
    if _is_plain(obj):
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps(obj)


loads = pickle.loads
