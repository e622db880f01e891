"""dato-dist: run Python functions as jobs and map jobs here, on Hadoop YARN and on EC2.

GraphLab Create's deploy API, unchanged::

    import dato_dist as gl
    job = gl.deploy.map_job.create(add, [{'x': 1, 'y': 2}, {'x': 3, 'y': 4}])
    job.get_map_results()
"""

import importlib

from ._version import __version__

__all__ = ["deploy", "errors", "aws", "__version__"]

# Loaded on first use, so the driver and runner processes (python -m dato_dist.driver)
# start without importing the API; ``gl.aws`` is part of the EC2 backend.
_LAZY = {"deploy": "dato_dist.deploy", "errors": "dato_dist.errors", "aws": "dato_dist.ec2.aws"}


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'dato_dist' has no attribute '{name}'")
