"""Environments: where a job's driver and runners run.

Backends are found by name through :data:`REGISTRY` and imported on first use, so core
code never imports a backend (skein, boto3, fabric) at module load.
"""

import importlib

from ..errors import BackendUnavailable, InvalidArgument
from .base import Environment

#: Environment type name -> "module:Class", imported on first use.
REGISTRY = {
    "Local": "dato_dist.environments.local:Local",
    "LocalAsync": "dato_dist.environments.local:LocalAsync",
    "HadoopCluster": "dato_dist.yarn_app.cluster:HadoopCluster",
    "Ec2Cluster": "dato_dist.ec2.cluster:Ec2Cluster",
}

_EXTRAS = {"HadoopCluster": ("Hadoop", "yarn"), "Ec2Cluster": ("EC2", "ec2")}


def environment_class(type_name):
    """The class registered for ``type_name``."""
    try:
        target = REGISTRY[type_name]
    except KeyError:
        raise InvalidArgument(
            f"Unknown environment type '{type_name}'; known: {', '.join(REGISTRY)}") from None
    module, _, cls = target.partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as e:
        backend, extra = _EXTRAS.get(type_name, (type_name, "all"))
        raise BackendUnavailable(backend=backend, extra=extra, cause=e) from None


def environment_from_dict(data):
    """Rebuild an environment from its ``to_dict()``."""
    return environment_class(data["type"]).from_dict(data)


__all__ = ["Environment", "REGISTRY", "environment_class", "environment_from_dict"]
