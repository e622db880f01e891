"""``gl.deploy.job``: run one function call as a job."""

import logging

from .. import submit
from ..session import jobs

log = logging.getLogger(__name__)


def create(function, name=None, environment=None, *, max_retries=None, **kwargs):
    """Run ``function(**kwargs)`` as a job and return its :class:`~dato_dist.job.Job`.

    Parameters
    ----------
    function : callable
        A function, a lambda or a ``functools.partial`` (not an instance method).
    name : str, optional
        Letters, digits, ``-`` and ``_``; default ``<function>-<Mon-DD-YYYY-HH-MM-SS>``.
        A name already used is renamed ``<name>-<5 hex>``.
    environment : None, str or environment
        ``None``: the ``LocalAsync`` environment ``'async'``; a name from
        ``gl.deploy.environments``; or an environment object.
    max_retries : int, optional
        Keyword-only (ours): times a raising task is retried (config ``job.max_retries``).
    **kwargs
        The function's arguments; checked against its signature here.

    Examples
    --------
    >>> def add(x, y): return x + y
    >>> job = create(add, x=1, y=2)          # doctest: +SKIP
    >>> job.get_results()                    # doctest: +SKIP
    3
    """
    return submit.create(function, kind="job", task_kwargs=[kwargs], name=name,
                         environment=environment, max_retries=max_retries, logger=log)


def load(job_id_or_uri):
    """Re-attach to a job by id (from ``gl.deploy.jobs``) or by its store URI or path."""
    return jobs.load(job_id_or_uri)
