"""``gl.deploy.environment``: ``Local``, ``LocalAsync``, and the legacy ``EC2`` / ``Hadoop``."""

from ..environments.local import Local as _Local
from ..environments.local import LocalAsync as _LocalAsync
from ..errors import UnsupportedApi
from ..session import check_name, environments


def _registered(env):
    environments.register(env)
    return env


def Local(name, *, num_workers=None):
    """A synchronous environment on this machine (``job.create`` waits), registered by name."""
    return _registered(_Local(check_name(name, "environment name"), num_workers=num_workers))


def LocalAsync(name, *, num_workers=None):
    """A background environment on this machine, registered by name."""
    return _registered(_LocalAsync(check_name(name, "environment name"),
                                   num_workers=num_workers))


def EC2(name, s3_folder_path, **kwargs):
    """Legacy GraphLab EC2 environment; maps onto ``Ec2Config`` + ``ec2_cluster``."""
    from . import __getattr__ as lazy

    return lazy("ec2_cluster").from_legacy(name, s3_folder_path, **kwargs)


def Hadoop(name, config_dir=None, memory_mb=None, virtual_cores=None, **kwargs):
    """Legacy GraphLab Hadoop environment; maps onto ``hadoop_cluster``."""
    from . import __getattr__ as lazy

    return lazy("hadoop_cluster").from_legacy(name, config_dir=config_dir,
                                              memory_mb=memory_mb,
                                              virtual_cores=virtual_cores, **kwargs)


class Task:
    """GraphLab 1.0-1.2's Task API, which dato-dist does not support."""

    def __init__(self, *args, **kwargs):
        raise UnsupportedApi("The GraphLab 1.0-1.2 Task API is not supported: pass a plain "
                             "function to gl.deploy.job.create or gl.deploy.map_job.create.")
