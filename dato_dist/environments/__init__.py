"""Environments: where a job's driver and runners run.

Environment classes are found by type name through the backend registry
(:mod:`dato_dist.backends`) and imported on first use, so core code never imports a backend
(skein, boto3, fabric) at module load; a backend whose extra is missing raises
``BackendUnavailable``.
"""

from ..backends import ENVIRONMENTS, environment_class
from .base import Environment


def environment_from_dict(data):
    """Rebuild an environment from its ``to_dict()``."""
    return environment_class(data["type"]).from_dict(data)


__all__ = ["Environment", "ENVIRONMENTS", "environment_class", "environment_from_dict"]
