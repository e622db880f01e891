"""``gl.aws``: AWS credentials for the EC2 backend, as GraphLab had them.

Examples
--------
>>> import dato_dist as gl
>>> gl.aws.set_credentials('AKIAEXAMPLE', 'secret')   # doctest: +SKIP
"""

import os

from dato_dist.errors import InvalidArgumentType

_credentials = {}


def set_credentials(access_key, secret_key):
    """Use these AWS keys for EC2 and S3 from now on (in this process).

    As in GraphLab, they are also put in ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
    of this process, so S3 paths (the job store) use them too. They are never written to
    a file, to S3 or to a log.
    """
    if not isinstance(access_key, str) or not access_key:
        raise InvalidArgumentType("gl.aws.set_credentials: access_key must be a non-empty str.")
    if not isinstance(secret_key, str) or not secret_key:
        raise InvalidArgumentType("gl.aws.set_credentials: secret_key must be a non-empty str.")
    _credentials.update(access_key=access_key, secret_key=secret_key)
    os.environ["AWS_ACCESS_KEY_ID"] = access_key
    os.environ["AWS_SECRET_ACCESS_KEY"] = secret_key
    os.environ.pop("AWS_SESSION_TOKEN", None)


def get_credentials():
    """``(access_key, secret_key)`` set with :func:`set_credentials`, else from the
    environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``), else ``(None, None)``."""
    if _credentials:
        return _credentials["access_key"], _credentials["secret_key"]
    return os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")


def mask(key):
    """``ABCD...`` for a key id; never the whole thing."""
    if not key:
        return None
    return key[:4] + "..." if len(key) > 4 else "..."
