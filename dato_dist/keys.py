"""The keys that prove a job's store files were written by their owner.

Every user has one long-term key: ``DATO_DIST_KEY`` (hex), else the file ``<home>/key``
(``~/.dato_dist/key``, 0600, made on first use). A job's key is derived from it, the job's
id and a random per-job nonce kept in ``spec.json``: :func:`job_key`. Every pickled file of a
job and its ``spec.json``/``launch.json`` carry an HMAC-SHA256 with that key, checked before
anything is unpickled (:mod:`dato_dist.store`). Another machine of the same user verifies the
same jobs once it has the same key file (copy it, 0600). Drivers on cluster hosts and in
containers get only their job's key, over the channels that carry the job's connection key
(the local driver's ``go`` line, Skein's key-value store, the SSH session's stdin), never
the long-term key; no key is ever written to the store, a log or a command line.
"""

import hashlib
import hmac
import json
import os
import secrets

from .errors import KeyFileError, UntrustedStoreFile

USER_KEY_ENV = "DATO_DIST_KEY"
#: The environment variable a driver started on a cluster host takes its job's key from
#: (popped at once: its runners never see it).
JOB_KEY_ENV = "DATO_DIST_JOB_KEY"
#: The key's field in signed JSON files.
MAC_FIELD = "mac"
_KEY_BYTES = 32


def _parse_hex(text, where):
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) < 16:
        raise KeyFileError(where=where, reason="it is not a hex key of at least 32 digits")
    return key


def key_path(home=None):
    """Where this user's long-term key file is (``<home>/key``)."""
    if home is None:
        from .config import load

        home = load().home
    return os.path.join(os.fspath(home), "key")


def user_key(home=None):
    """This user's long-term key: ``DATO_DIST_KEY``, or ``<home>/key``, created on first use."""
    text = os.environ.get(USER_KEY_ENV)
    if text:
        return _parse_hex(text, f"the environment variable {USER_KEY_ENV}")
    path = key_path(home)
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:  # made by a concurrent first use
        return _read_key_file(path)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secrets.token_bytes(_KEY_BYTES).hex() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return _read_key_file(path)


def _read_key_file(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise KeyFileError(where=path, reason=f"it belongs to uid {st.st_uid}, not to you")
        if st.st_mode & 0o077:
            raise KeyFileError(where=path, reason=f"it is readable by others (mode "
                               f"{st.st_mode & 0o777:o}); run chmod 600 {path}")
        text = os.read(fd, 4096).decode("ascii", "replace")
    finally:
        os.close(fd)
    return _parse_hex(text, path)


def new_nonce():
    """A fresh per-job nonce (stored in ``spec.json``; not secret)."""
    return secrets.token_hex(16)


def job_key(master, job_id, nonce):
    """The key of job ``job_id`` with ``nonce``, derived from the long-term key ``master``."""
    info = b"dato-dist job key\0" + job_id.encode() + b"\0" + str(nonce).encode()
    return hmac.new(master, info, hashlib.sha256).digest()


def mac(key, name, *parts):
    """HMAC-SHA256 with ``key`` over ``name`` (the file's path in its job) and ``parts``."""
    h = hmac.new(key, name.encode() + b"\0", hashlib.sha256)
    for part in parts:
        h.update(part)
    return h.digest()


def _canonical(obj):
    body = {k: v for k, v in obj.items() if k != MAC_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_json(key, name, obj):
    """``obj`` (a dict) with its MAC under :data:`MAC_FIELD`."""
    return dict(obj, **{MAC_FIELD: mac(key, name, _canonical(obj)).hex()})


def verify_json(key, name, obj, display):
    """``obj`` without its MAC; :class:`UntrustedStoreFile` naming ``display`` unless the MAC
    is there and right."""
    if not isinstance(obj, dict) or not isinstance(obj.get(MAC_FIELD), str):
        raise UntrustedStoreFile(path=display, reason="it carries no signature")
    if not hmac.compare_digest(obj[MAC_FIELD], mac(key, name, _canonical(obj)).hex()):
        raise UntrustedStoreFile(path=display, reason="its signature does not match")
    return {k: v for k, v in obj.items() if k != MAC_FIELD}
