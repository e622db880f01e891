"""The persisted collections ``gl.deploy.jobs`` and ``gl.deploy.environments``.

Each entry is one small JSON file under ``<home>/session/{jobs,environments}/`` (0600, in
0700 folders): the files are the truth, so two processes on this machine that add entries at
once never lose one, and a crash mid-update loses nothing (each file is written under a
temporary name and renamed into place). Listing uses an index beside them,
``<home>/session/index.sqlite3``: one row per entry with what the listing shows (name,
creation date, environment or type). Every read reconciles the index with the folder's file
names (one ``listdir``): entries added by another process, or by an older version of dato-dist
(migration), are read and indexed, rows whose file is gone are dropped. So the index can
always be rebuilt from the files: a corrupt index is moved aside and rebuilt. An entry's
content (a job's URI, an environment's definition) is always read from its own file.

Removing an entry only forgets the local reference: it never cancels a job or stops a cluster.
"""

import contextlib
import fnmatch
import json
import logging
import os
import re
import sqlite3
import threading
import time

from .config import load as load_config
from .errors import EnvironmentNotFound, InvalidArgument, JobNotFound
from .job import Job
from .store import private_dirs
from .table import HEAD_COLUMNS, HEAD_ROWS, Table

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[a-zA-Z0-9\-_]+")
#: Longest name accepted: a job's name is a folder name in its store (255 bytes at most on
#: most filesystems), with room for the ``-<5 hex>`` added on a clash.
MAX_NAME_LENGTH = 200
INDEX_FILE = "index.sqlite3"
#: Longest the index waits for another process's update (bounded, then it reads the files).
INDEX_TIMEOUT_S = 5.0
#: A folder whose mtime is older than this is stamped in the index (coarser than any
#: filesystem's timestamp granularity): see _Collection._reconcile.
QUIET_NS = 100_000_000
#: Names an error message lists at most.
_KNOWN_SHOWN = 20


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


def _private_dir(path):
    """The folder ``path``, made 0700 (and missing parents) whatever the umask."""
    private_dirs(path)
    return path


def _write_private(path, text, exclusive=False):
    """Write ``text`` to ``path`` as a 0600 file: in place and only if absent with
    ``exclusive`` (False if it exists), else under a temporary name then renamed."""
    target = path if exclusive else path.with_name(f".{path.name}.{os.getpid()}."
                                                   f"{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError:
        if exclusive:
            return False
        os.unlink(target)  # a leftover of a crashed writer of this pid and thread
        fd = os.open(target, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with open(fd, "w", closefd=True) as f:
            f.write(text)
        if not exclusive:
            os.replace(target, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise
    return True


class _Index:
    """The listing index of one session folder (see the module docstring)."""

    _lock = threading.Lock()
    _connections = {}  # (pid, path) -> sqlite3.Connection

    def __init__(self, session_dir):
        self.path = session_dir / INDEX_FILE

    def connection(self):
        key = (os.getpid(), str(self.path))
        with self._lock:
            conn = self._connections.get(key)
            if conn is None:
                conn = self._connections[key] = self._open()
            return conn

    def _open(self):
        if not self.path.exists():
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                 | os.O_NOFOLLOW, 0o600))
        conn = sqlite3.connect(str(self.path), timeout=INDEX_TIMEOUT_S,
                               isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # the files are the truth
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)")
            for kind in ("jobs", "environments"):
                conn.execute(f"CREATE TABLE IF NOT EXISTS {kind} (name TEXT PRIMARY KEY, "
                             "created REAL NOT NULL, label TEXT, date TEXT)")
                conn.execute(f"CREATE INDEX IF NOT EXISTS {kind}_order ON {kind} "
                             "(created DESC, name)")
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def recover(self, error):
        """Move a corrupt index aside (it is rebuilt from the files on the next read)."""
        key = (os.getpid(), str(self.path))
        with self._lock:
            conn = self._connections.pop(key, None)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        aside = self.path.with_name(f"{INDEX_FILE}.corrupt-{int(time.time())}-{os.getpid()}")
        log.warning("The session index %s is unreadable (%s); moved it to %s and rebuilding "
                    "it from the session files (nothing is lost).", self.path, error, aside)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")


def _tz_key():
    return f"{time.timezone}/{time.altzone}/{time.daylight}/{time.tzname}"


class _Listing(Table):
    """A collection's listing as a :class:`~dato_dist.table.Table`, made lazily: its shape
    and printed head come from two small index queries; the rows are made on first use
    of anything else (``to_dataframe()``, a column, iteration)."""

    def __init__(self, column_names, total, head, load_rows):  # deliberately no super().__init__: no copy of the rows
        self._columns = list(column_names)
        self._total, self._head, self._load_rows, self._all = total, head, load_rows, None

    @property
    def _rows(self):
        if self._all is None:
            self._all = self._load_rows()
        return self._all

    @property
    def num_rows(self):
        return self._total if self._all is None else len(self._all)

    def __len__(self):
        return self.num_rows

    def format(self, num_rows=HEAD_ROWS, num_columns=HEAD_COLUMNS):
        if self._all is None and 0 <= num_rows <= len(self._head):
            return _Head(self._columns, self._head[:num_rows], self._total).format(
                num_rows, num_columns)
        return super().format(num_rows, num_columns)


class _Head(Table):
    """The first rows of a listing, printed with the whole listing's shape."""

    def __init__(self, column_names, rows, total):  # deliberately no super().__init__: no copy of the rows
        self._columns, self._rows, self._total = list(column_names), rows, total

    @property
    def num_rows(self):
        return self._total


class _Collection:
    kind = None
    not_found = KeyError
    title = None

    def _dir(self):
        return _private_dir(load_config().session_dir / self.kind)

    def _index(self):
        return _Index(_private_dir(load_config().session_dir))

    def _file(self, name):
        return self._dir() / f"{name}.json"

    def _read_file(self, name):
        """The entry in ``<name>.json``, or None if it is missing or unreadable."""
        path = self._file(name)
        try:
            entry = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("Skipping unreadable session file %s", path)
            return None
        if not isinstance(entry, dict) or entry.get("name") != name:
            log.warning("Skipping session file %s: it does not hold the entry '%s'", path,
                        name)
            return None
        return entry

    def _file_names(self, d):
        return {n[:-5] for n in os.listdir(d) if n.endswith(".json") and n[0] != "."}

    def _query(self, sql, params=()):
        """``sql``'s rows from the index once it agrees with the files; the files
        themselves (slow) when the index is busy beyond INDEX_TIMEOUT_S or unusable."""
        index = self._index()
        for attempt in range(2):
            try:
                conn = index.connection()
                self._reconcile(conn)
                return conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as e:
                if attempt or isinstance(e, sqlite3.OperationalError) and \
                        "locked" in str(e):
                    break
                index.recover(e)
        log.warning("The session index %s is busy or unusable; reading the session files.",
                    index.path)
        return None

    def _reconcile(self, conn):
        """Bring the index in line with the folder's files, unless the folder has not
        changed since the index last did (its mtime is the stamp)."""
        d = self._dir()
        stamp_key = f"{self.kind}_stamp"
        meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN (?, 'tz')",
                                 (stamp_key,)).fetchall())
        tz = _tz_key()
        if meta.get(stamp_key) == os.stat(d).st_mtime_ns and meta.get("tz") == tz:
            return
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            before = os.stat(d).st_mtime_ns
            names = self._file_names(d)
            indexed = {r[0] for r in conn.execute(f"SELECT name FROM {self.kind}")}
            conn.executemany(f"DELETE FROM {self.kind} WHERE name = ?",
                             [(n,) for n in indexed - names])
            conn.executemany(f"INSERT OR REPLACE INTO {self.kind} VALUES (?, ?, ?, ?)",
                             self._rows_from_files(names - indexed))
            if meta.get("tz") != tz:  # the dates shown are local times
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('tz', ?)", (tz,))
                for kind in ("jobs", "environments"):
                    conn.executemany(f"UPDATE {kind} SET date = ? WHERE name = ?", [
                        (_format_date(c), n) for n, c in
                        conn.execute(f"SELECT name, created FROM {kind}").fetchall()])
            # A change within the filesystem's timestamp granularity after our listdir
            # could keep the same mtime: only a folder quiet for a while is stamped.
            quiet = time.time_ns() - before > QUIET_NS and os.stat(d).st_mtime_ns == before
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                         (stamp_key, before if quiet else None))
            conn.execute("DELETE FROM meta WHERE key = ?", (f"{self.kind}_names",))

    def _rows_from_files(self, names):
        rows = []
        for name in names:
            entry = self._read_file(name)
            if entry is not None:
                with contextlib.suppress(OSError):  # an older version wrote them 0644
                    os.chmod(self._file(name), 0o600)
                created = float(entry.get("created", 0))
                rows.append((name, created, self._label(entry), _format_date(created)))
        return rows

    def _sorted(self, limit=-1):
        """``[(name, created, label, date)]``, newest first (the first ``limit``)."""
        rows = self._query(f"SELECT name, created, label, date FROM {self.kind} "
                           "ORDER BY created DESC, name LIMIT ?", (limit,))
        if rows is None:
            rows = self._rows_from_files(self._file_names(self._dir()))
            rows.sort(key=lambda r: (-r[1], r[0]))
            rows = rows if limit < 0 else rows[:limit]
        return rows

    def _name_at(self, i):
        """The name at position ``i`` (negative from the end), or IndexError."""
        if i < 0:
            count = self._query(f"SELECT count(*) FROM {self.kind}")
            if count is not None:
                i += count[0][0]
        rows = self._query(f"SELECT name FROM {self.kind} ORDER BY created DESC, name "
                           "LIMIT 1 OFFSET ?", (i,)) if i >= 0 else []
        if rows is None:
            rows = self._sorted()[i:i + 1] if i >= 0 else []
        if not rows:
            raise IndexError(f"No {self.kind[:-1]} at index {i}: there are {len(self)}.")
        return rows[0][0]

    def _index_put(self, entry):
        created = float(entry.get("created", 0))
        row = (entry["name"], created, self._label(entry), _format_date(created))
        self._index_write(f"INSERT OR REPLACE INTO {self.kind} VALUES (?, ?, ?, ?)", row)

    def _index_write(self, sql, params):
        # Best effort: a row missing or left over is fixed by the next read's reconcile.
        try:
            with self._index().connection() as conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(sql, params)
                conn.execute("DELETE FROM meta WHERE key = ?", (f"{self.kind}_names",))
        except sqlite3.Error as e:
            log.debug("Session index not updated (%s); the next listing reconciles it.", e)

    def _save(self, entry):
        _write_private(self._file(entry["name"]), json.dumps(entry, indent=1, sort_keys=True))
        self._index_put(entry)

    def _remove(self, name):
        try:
            self._file(name).unlink()
        except FileNotFoundError:
            pass
        self._index_write(f"DELETE FROM {self.kind} WHERE name = ?", (name,))

    def has(self, name):
        return isinstance(name, str) and NAME_RE.fullmatch(name) is not None and \
            self._file(name).exists()

    def names(self):
        """The entries' names, newest first (kept in the index as one value, made again
        after any change: one split instead of a row per entry)."""
        key = f"{self.kind}_names"
        cached = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        if cached is None:
            return [r[0] for r in self._sorted()]
        if cached and cached[0][0] is not None:
            return cached[0][0].split("\0") if cached[0][0] else []
        try:
            with self._index().connection() as conn:
                conn.execute("BEGIN IMMEDIATE")  # no writer between the rows and the value
                names = [r[0] for r in conn.execute(
                    f"SELECT name FROM {self.kind} ORDER BY created DESC, name")]
                conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                             (key, "\0".join(names)))
            return names
        except sqlite3.Error:
            return [r[0] for r in self._sorted()]

    def _known(self):
        names = self.names()
        shown = ", ".join(names[:_KNOWN_SHOWN]) or "none"
        more = len(names) - _KNOWN_SHOWN
        return f"{shown} (and {more} more)" if more > 0 else shown

    def _entry(self, key):
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(f"Index {self.kind} by position (int) or name (str), not {key!r}.")
        if isinstance(key, str):
            entry = self._read_file(key) if self.has(key) else None
            if entry is None:
                raise self.not_found(f"No {self.kind[:-1]} named '{key}'. Known: "
                                     f"{self._known()}.")
            return entry
        for _attempt in range(3):  # an entry removed between the listing and its read
            name = self._name_at(key)
            entry = self._read_file(name)
            if entry is not None:
                return entry
        raise self.not_found(f"The {self.kind[:-1]} at index {key} ('{name}') was removed "
                             "while it was read; list them again.")

    def __len__(self):
        count = self._query(f"SELECT count(*) FROM {self.kind}")
        return count[0][0] if count is not None else len(self._sorted())

    def __iter__(self):
        return iter([self._load(e) for e in map(self._read_file, self.names())
                     if e is not None])

    def __getitem__(self, key):
        return self._load(self._entry(key))

    def __delitem__(self, key):
        self._remove(self._entry(key)["name"])

    def __contains__(self, name):
        return self.has(name)

    def delete(self, item=None, pattern=None, silent=False):
        """Forget entries: ``item`` (an object, a name or an index), or names matching the
        fnmatch ``pattern``. Never cancels a job or stops a cluster."""
        if (item is None) == (pattern is None):
            raise InvalidArgument("Pass exactly one of item and pattern to delete().")
        if pattern is not None:
            names = [n for n in self.names() if fnmatch.fnmatchcase(n, pattern)]
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
        return _Listing(self.columns, len(self), self._rows(self._sorted(HEAD_ROWS)),
                        lambda: self._rows(self._sorted()))

    def show(self):
        print(self)

    def __str__(self):
        table = self.list()
        if not len(table):
            return "Nothing to display."
        return f"{self.title}:\n{table}"

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
        entry = {"name": name, "uri": uri, "environment": environment_name,
                 "created": created}
        if not _write_private(self._file(name), json.dumps(entry), exclusive=True):
            return False
        self._index_put(entry)
        return True

    def release(self, name):
        """Forget a reserved name whose job was never created."""
        self._remove(name)

    def register(self, name, uri, environment_name, created):
        self._save({"name": name, "uri": uri, "environment": environment_name,
                    "created": created})

    @staticmethod
    def _label(entry):
        return entry.get("environment")

    @staticmethod
    def _rows(rows):
        return [{"Index": i, "Environment": label, "Name": name, "Creation date": date}
                for i, (name, _created, label, date) in enumerate(rows)]

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

    @staticmethod
    def _label(entry):
        env = entry.get("environment")
        return env.get("type") if isinstance(env, dict) else None

    @staticmethod
    def _rows(rows):
        return [{"Index": i, "Name": name, "Type": label, "Unsaved changes?": False,
                 "Creation date": date} for i, (name, _created, label, date) in enumerate(rows)]

    def _load(self, entry):
        from .environments import environment_from_dict

        return environment_from_dict(entry["environment"])


jobs = Jobs()
environments = Environments()
