"""The persisted collections ``gl.deploy.jobs`` and ``gl.deploy.environments``.

Each entry is one small JSON file under ``<home>/session/{jobs,environments}/``, so two
processes on this machine see the same collections and never rewrite each other's entries.
Removing an entry only forgets the local reference: it never cancels a job or stops a cluster.
"""

import fnmatch
import json
import logging
import os
import re
import time

from .config import load as load_config
from .errors import EnvironmentNotFound, InvalidArgument, JobNotFound
from .job import Job
from .table import Table

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[a-zA-Z0-9\-_]+")
#: Longest name accepted: a job's name is a folder name in its store (255 bytes at most on
#: most filesystems), with room for the ``-<5 hex>`` added on a clash.
MAX_NAME_LENGTH = 200


def check_name(name, what="name"):
    """Raise ``ValueError`` unless all of ``name`` matches GraphLab's ``[a-zA-Z0-9-_]+``
    (``fullmatch``: ``'abc\\n'`` is refused) and it has at most MAX_NAME_LENGTH characters."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"Invalid {what} {name!r}: use only letters, digits, '-' and '_'.")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            f"Invalid {what} {name[:20]!r}... ({len(name)} characters): use at most "
            f"{MAX_NAME_LENGTH}.")
    return name


def _format_date(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


class _Collection:
    kind = None
    not_found = KeyError
    title = None

    def _dir(self):
        d = load_config().session_dir / self.kind
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _entries(self):
        """Entries, newest first."""
        entries = []
        for path in self._dir().glob("*.json"):
            try:
                entries.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                log.warning("Skipping unreadable session file %s", path)
        entries.sort(key=lambda e: (-e.get("created", 0), e["name"]))
        return entries

    def _save(self, entry):
        d = self._dir()
        tmp = d / f".{entry['name']}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(entry, indent=1, sort_keys=True))
        os.replace(tmp, d / f"{entry['name']}.json")

    def _remove(self, name):
        try:
            (self._dir() / f"{name}.json").unlink()
        except FileNotFoundError:
            pass

    def has(self, name):
        return (self._dir() / f"{name}.json").exists()

    def names(self):
        return [e["name"] for e in self._entries()]

    def _entry(self, key):
        entries = self._entries()
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(f"Index {self.kind} by position (int) or name (str), not {key!r}.")
        if isinstance(key, int):
            try:
                return entries[key]
            except IndexError:
                raise IndexError(f"No {self.kind[:-1]} at index {key}: there are "
                                 f"{len(entries)}.") from None
        for e in entries:
            if e["name"] == key:
                return e
        raise self.not_found(f"No {self.kind[:-1]} named '{key}'. Known: "
                             f"{', '.join(e['name'] for e in entries) or 'none'}.")

    def __len__(self):
        return len(self._entries())

    def __iter__(self):
        return iter([self._load(e) for e in self._entries()])

    def __getitem__(self, key):
        return self._load(self._entry(key))

    def __delitem__(self, key):
        self._remove(self._entry(key)["name"])

    def __contains__(self, name):
        return isinstance(name, str) and self.has(name)

    def delete(self, item=None, pattern=None, silent=False):
        """Forget entries: ``item`` (an object, a name or an index), or names matching the
        fnmatch ``pattern``. Never cancels a job or stops a cluster."""
        if (item is None) == (pattern is None):
            raise InvalidArgument("Pass exactly one of item and pattern to delete().")
        if pattern is not None:
            names = [n for n in self.names() if fnmatch.fnmatch(n, pattern)]
        elif isinstance(item, (int, str)):
            names = [self._entry(item)["name"]]
        else:
            names = [self._entry(item.name)["name"]]
        for name in names:
            self._remove(name)
            if not silent:
                log.info("Deleted reference to %s '%s' from current session.",
                         self.kind[:-1], name)
        return names

    def list(self):
        """The entries as a table (newest first) with ``to_dataframe()``."""
        return Table(self.columns, [self._row(i, e) for i, e in enumerate(self._entries())])

    def show(self):
        print(self)

    def __str__(self):
        entries = self._entries()
        if not entries:
            return "Nothing to display."
        return f"{self.title}:\n{self.list()}"

    __repr__ = __str__


class Jobs(_Collection):
    """The jobs created on this machine, newest first: ``jobs[0]``, ``jobs['name']``."""

    kind = "jobs"
    title = "Job(s)"
    not_found = JobNotFound
    columns = ["Index", "Environment", "Name", "Creation date"]

    def reserve(self, name, uri, environment_name, created):
        """Claim ``name`` on this machine: False if another process has it already.

        The entry is created exclusively, so two clients that pick the same default name
        in the same second get one each, never one job folder for two jobs.
        """
        path = self._dir() / f"{name}.json"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump({"name": name, "uri": uri, "environment": environment_name,
                       "created": created}, f)
        return True

    def release(self, name):
        """Forget a reserved name whose job was never created."""
        self._remove(name)

    def register(self, name, uri, environment_name, created):
        self._save({"name": name, "uri": uri, "environment": environment_name,
                    "created": created})

    def _row(self, i, e):
        return {"Index": i, "Environment": e.get("environment"), "Name": e["name"],
                "Creation date": _format_date(e["created"])}

    def uri_of(self, name):
        return self._entry(name)["uri"]

    def _load(self, entry):
        return Job.load(entry["uri"])

    def load(self, id_or_uri):
        """The job named ``id_or_uri`` on this machine (in whatever store it was created),
        or at that store URI / path (see :meth:`dato_dist.job.Job.load`)."""
        if isinstance(id_or_uri, str) and "/" not in id_or_uri and self.has(id_or_uri):
            return Job.load(self.uri_of(id_or_uri))
        return Job.load(id_or_uri)


class Environments(_Collection):
    """The environments of this machine: ``environments['name']``, ``environments[0]``."""

    kind = "environments"
    title = "Environment(s)"
    not_found = EnvironmentNotFound
    columns = ["Index", "Name", "Type", "Unsaved changes?", "Creation date"]

    def register(self, environment):
        """Save ``environment`` (replacing one of the same name)."""
        entry = {"name": environment.name, "environment": environment.to_dict(),
                 "created": time.time()}
        self._save(entry)

    def _row(self, i, e):
        return {"Index": i, "Name": e["name"], "Type": e["environment"]["type"],
                "Unsaved changes?": False, "Creation date": _format_date(e["created"])}

    def _load(self, entry):
        from .environments import environment_from_dict

        return environment_from_dict(entry["environment"])


jobs = Jobs()
environments = Environments()
