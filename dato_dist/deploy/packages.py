"""``@required_packages``: the packages a function needs where it runs."""

from ..errors import InvalidArgumentType


def required_packages(packages):
    """Record ``packages`` (pip requirement strings) on the decorated function.

    They are stored with every job of the function; cluster environments install them
    before the job's tasks run. Local environments run in this Python, so they only record
    them.

    Examples
    --------
    >>> @required_packages(['names==0.3.0'])
    ... def f(): pass
    >>> f.required_packages
    ['names==0.3.0']
    """
    if isinstance(packages, str):
        packages = [packages]
    if not isinstance(packages, (list, tuple, set)) or not all(
            isinstance(p, str) for p in packages):
        raise InvalidArgumentType(
            f"required_packages takes a list of requirement strings, got {packages!r}.")

    def decorate(function):
        existing = list(getattr(function, "required_packages", []) or [])
        function.required_packages = existing + [p for p in packages if p not in existing]
        return function

    return decorate
