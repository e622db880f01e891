"""dato-dist: run Python functions as jobs and map jobs here, on Hadoop YARN and on EC2.

GraphLab Create's deploy API, unchanged::

    import dato_dist as gl
    job = gl.deploy.map_job.create(add, [{'x': 1, 'y': 2}, {'x': 3, 'y': 4}])
    job.get_map_results()
"""

from . import deploy, errors
from ._version import __version__

__all__ = ["deploy", "errors", "aws", "__version__"]


def __getattr__(name):
    if name == "aws":  # gl.aws.set_credentials(...): part of the EC2 backend
        import importlib

        return importlib.import_module("ec2.aws")
    raise AttributeError(f"module 'dato_dist' has no attribute '{name}'")
