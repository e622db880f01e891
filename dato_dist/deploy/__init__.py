"""``gl.deploy``: the GraphLab Create deploy API.

``job``, ``map_job``, ``jobs``, ``environments``, ``environment``, ``Job``,
``required_packages``; the cluster names (``Ec2Config``, ``ec2_cluster``,
``hadoop_cluster``, ``Ec2Cluster``, ``HadoopCluster``) load their backend on first use,
through :mod:`dato_dist.backends` (a missing extra is ``BackendUnavailable``).
"""

from ..backends import DEPLOY_NAMES, load
from ..job import Job
from ..session import environments, jobs
from . import environment, job, map_job
from .packages import required_packages


def __getattr__(name):
    if name not in DEPLOY_NAMES:
        raise AttributeError(f"module 'dato_dist.deploy' has no attribute '{name}'")
    return load(*DEPLOY_NAMES[name])


__all__ = ["job", "map_job", "jobs", "environments", "environment", "Job",
           "required_packages"] + list(DEPLOY_NAMES)
