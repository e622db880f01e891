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
# start without importing the API; backend names (``gl.aws``) come from dato_dist.backends.
_LAZY = {"deploy": "dato_dist.deploy", "errors": "dato_dist.errors"}


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
    else:
        from .backends import TOP_NAMES, load

        if name not in TOP_NAMES:
            raise AttributeError(f"module 'dato_dist' has no attribute '{name}'")
        module = load(*TOP_NAMES[name])
    globals()[name] = module
    return module
