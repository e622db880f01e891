"""``gl.deploy``: the GraphLab Create deploy API.

``job``, ``map_job``, ``jobs``, ``environments``, ``environment``, ``Job``,
``required_packages``; the cluster names (``Ec2Config``, ``ec2_cluster``,
``hadoop_cluster``, ``Ec2Cluster``, ``HadoopCluster``) load their backend on first use.
"""

import importlib

from ..job import Job
from ..session import environments, jobs
from . import environment, job, map_job
from .packages import required_packages

_LAZY = {
    "Ec2Config": ("dato_dist.ec2.config", "Ec2Config", "EC2"),
    "Ec2Cluster": ("dato_dist.ec2.cluster", "Ec2Cluster", "EC2"),
    "ec2_cluster": ("dato_dist.ec2.cluster", None, "EC2"),
    "HadoopCluster": ("dato_dist.yarn_app.cluster", "HadoopCluster", "Hadoop"),
    "hadoop_cluster": ("dato_dist.yarn_app.cluster", None, "Hadoop"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'dato_dist.deploy' has no attribute '{name}'")
    module_name, attr, backend = _LAZY[name]
    from ..errors import UnsupportedApi

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (e.name == module_name or module_name.startswith(e.name + ".")):
            raise UnsupportedApi(f"The {backend} backend ({name}) is not available in this "
                                 "version of dato-dist.") from None
        raise
    return getattr(module, attr) if attr else module


__all__ = ["job", "map_job", "jobs", "environments", "environment", "Job",
           "required_packages"] + list(_LAZY)
