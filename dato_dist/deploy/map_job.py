"""``gl.deploy.map_job``: run a function over a parameter set, in parallel."""

import logging

from .. import submit

log = logging.getLogger(__name__)


def create(function, parameter_set, name=None, environment=None, combiner_function=None, *,
           max_retries=None):
    """Run ``function(**kwargs)`` for every dict in ``parameter_set`` as one job.

    Task ``i`` is named ``<function>-0-<i>``. A task that raises is recorded as Failed in
    ``get_metrics()`` and its result is ``None`` in ``get_map_results()``; the other tasks
    go on, and the job still Completes.

    Parameters
    ----------
    function : callable
    parameter_set : iterable of dict
        One dict of keyword arguments per task (a generator is expanded). Empty is an error.
    name, environment : see :func:`dato_dist.deploy.job.create`.
    combiner_function : callable, optional
        Called once every task ended, as ``combiner(**{task_name: result})``; a failed
        task's result is ``None``. Its return value is ``get_results()``. If it raises,
        the job is Failed and ``get_error()`` has its traceback.
    max_retries : int, optional
        Keyword-only (ours): times a raising task is retried.

    Examples
    --------
    >>> def add(x, y): return x + y
    >>> job = create(add, [{'x': 1, 'y': 2}, {'x': 3, 'y': 4}])   # doctest: +SKIP
    >>> job.get_map_results()                                      # doctest: +SKIP
    [3, 7]
    """
    items, columns = submit.parameter_columns(parameter_set)
    return submit.create(function, kind="map_job", task_kwargs=items, name=name,
                         environment=environment, combiner_function=combiner_function,
                         max_retries=max_retries, logger=log, columns=columns)
