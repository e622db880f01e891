"""Configuration, with one precedence implemented once.

Lowest first: the shipped ``defaults.toml`` (``dato_dist.conf``) < the user file (``$DATO_DIST_CONFIG`` or
``~/.dato_dist/config.toml``) < environment variables (``DATO_DIST_<SECTION>_<KEY>``;
``DATO_DIST_HOME`` is ``store.home``) < keyword arguments (``load(overrides=...)``).

Keys are ``section.key``; every key must exist in the shipped defaults, and a value from
a file or the environment is converted to the default's type, then range-checked by its
entry in :data:`CHECKS`; an error names the key and where the value came from.
"""

import math
import os
from pathlib import Path

from .errors import ConfigError

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

_ENV_PREFIX = "DATO_DIST_"
_ENV_ALIASES = {"DATO_DIST_HOME": "store.home"}


def defaults_path():
    """The shipped defaults file, package data of ``dato_dist.conf``."""
    from importlib import resources

    path = Path(str(resources.files("dato_dist.conf").joinpath("defaults.toml")))
    if not path.is_file():
        raise ConfigError(f"The shipped configuration {path} is missing. Reinstall dato-dist.")
    return path


def user_config_path(environ=None):
    """The user's config file (it need not exist)."""
    explicit = (os.environ if environ is None else environ).get("DATO_DIST_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    return Path("~/.dato_dist/config.toml").expanduser()


def _flatten(tree, source):
    flat = {}
    for section, body in tree.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: '{section}' must be a [section], not a value.")
        for key, value in body.items():
            flat[f"{section}.{key}"] = value
    return flat


_parsed = {}  # path -> (mtime_ns, size, flattened values): a file is parsed once per change


def _read_toml(path):
    st = os.stat(path)
    cached = _parsed.get(str(path))
    if cached is not None and cached[:2] == (st.st_mtime_ns, st.st_size):
        return dict(cached[2])
    try:
        with open(path, "rb") as f:
            flat = _flatten(tomllib.load(f), path)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"The config file {path} is not valid TOML: {e}") from None
    _parsed[str(path)] = (st.st_mtime_ns, st.st_size, flat)
    return dict(flat)


def _at_least(low, *, strict=False):
    """A check for a finite number ``>= low`` (``> low`` when ``strict``)."""
    def check(value):
        return math.isfinite(value) and (value > low if strict else value >= low)
    return check, f"a finite number {'>' if strict else '>='} {low}"


def _one_of(*choices):
    return (lambda value: value in choices), "one of " + ", ".join(map(repr, choices))


_NON_EMPTY = (lambda value: bool(value.strip())), "a non-empty string"
_PORT = (lambda value: 1 <= value <= 65535), "a port number (1-65535)"

#: Range checks of the shipped keys: ``key -> (predicate, what a good value is)``. A key
#: without an entry takes any value of its default's type. Keep next to defaults.toml.
CHECKS = {
    "store.home": _NON_EMPTY,
    "store.write_retries": _at_least(0),
    "store.read_retry_timeout": _at_least(0, strict=True),
    "local.num_workers": _at_least(0),
    "local.start_method": _one_of("launcher", "spawn"),
    "local.launcher_idle_timeout": _at_least(0, strict=True),
    "runner.heartbeat_interval": _at_least(0, strict=True),
    "runner.heartbeat_timeout": _at_least(0, strict=True),
    "runner.max_batch_size": _at_least(1),
    "runner.result_flush_interval": _at_least(0),
    "runner.max_task_output": _at_least(0),
    "driver.flush_interval": _at_least(0),
    "driver.max_runner_restarts": _at_least(0),
    "driver.max_task_preemptions": _at_least(1),
    "driver.runner_wait_timeout": _at_least(0, strict=True),
    "driver.heartbeat_interval": _at_least(0, strict=True),
    "driver.heartbeat_timeout": _at_least(0, strict=True),
    "job.max_retries": _at_least(0),
    "hadoop.driver_memory": _at_least(1),
    "hadoop.queue": _NON_EMPTY,
    "hadoop.start_timeout": _at_least(0, strict=True),
    "hadoop.num_containers": _at_least(1),
    "hadoop.container_size": _at_least(1),
    "hadoop.num_vcores": _at_least(1),
    "hadoop.start_port": _PORT,
    "hadoop.end_port": _PORT,
    "ec2.region": _NON_EMPTY,
    "ec2.instance_type": _NON_EMPTY,
    "ec2.ssh_user": _NON_EMPTY,
    "ec2.ssh_port": _PORT,
    "ec2.start_port": _PORT,
    "ec2.end_port": _PORT,
    "ec2.idle_action": _one_of("shutdown", "terminate"),
    "ec2.ssh_timeout": _at_least(0, strict=True),
    "ec2.log_sync_interval": _at_least(0, strict=True),
    "ec2.launch_timeout": _at_least(0, strict=True),
}

#: ``(shorter, longer, factor)``: ``longer`` must be at least ``factor`` times ``shorter``
#: (a timeout that a single late heartbeat would trip reports live processes lost).
RELATIONS = [
    ("runner.heartbeat_interval", "runner.heartbeat_timeout", 2),
    ("driver.heartbeat_interval", "driver.heartbeat_timeout", 3),
]


def _check(key, value, where):
    check = CHECKS.get(key)
    if check is not None and not check[0](value):
        raise ConfigError(f"Config key '{key}' from {where} must be {check[1]}, got {value!r}.")


def _convert(key, value, default, source):
    """Convert ``value`` to the type of ``default``; ``source`` names where it came from."""
    kind = type(default)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    try:
        if kind is bool:
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind in (int, float) and isinstance(value, str):
            return kind(value.strip())
        if kind is str and isinstance(value, str):
            return value
    except ValueError:
        pass
    raise ConfigError(
        f"Config key '{key}' from {source} must be a {kind.__name__}, got {value!r}."
    )


class Config:
    """An immutable view of the effective configuration.

    Examples
    --------
    >>> cfg = Config.load(overrides={"local.num_workers": 2})
    >>> cfg["local.num_workers"]
    2
    """

    def __init__(self, values, sources):
        self._values = dict(values)
        self._sources = dict(sources)

    @classmethod
    def load(cls, overrides=None, environ=None):
        """Build the effective config from every layer, lowest precedence first."""
        environ = os.environ if environ is None else environ
        path = defaults_path()
        defaults = _read_toml(path)
        values = dict(defaults)
        sources = {key: str(path) for key in defaults}
        wheres = {key: f"the file {path}" for key in defaults}  # for error messages
        for key, value in defaults.items():
            _check(key, value, wheres[key])

        def apply(layer, source, where=None):
            for key, value in layer.items():
                if key not in defaults:
                    raise ConfigError(
                        f"Unknown config key '{key}' in {source}. Known keys: "
                        + ", ".join(sorted(defaults))
                    )
                place = where(key) if where else source
                values[key] = _convert(key, value, defaults[key], place)
                _check(key, values[key], place)
                sources[key], wheres[key] = source, place

        user = user_config_path(environ)
        if user.is_file():
            apply(_read_toml(user), str(user), lambda key: f"the file {user}")
        env_layer, env_names = {}, {}
        for name, value in environ.items():
            if name in _ENV_ALIASES:
                env_layer[_ENV_ALIASES[name]] = value
                env_names[_ENV_ALIASES[name]] = name
            elif name.startswith(_ENV_PREFIX) and name != "DATO_DIST_CONFIG":
                section, _, key = name[len(_ENV_PREFIX):].lower().partition("_")
                dotted = f"{section}.{key}"
                if dotted in defaults:
                    env_layer[dotted] = value
                    env_names[dotted] = name
        for key, value in env_layer.items():
            apply({key: value}, "the environment",
                  lambda key: f"the environment variable {env_names[key]}")
        apply({k: v for k, v in (overrides or {}).items() if v is not None}, "arguments",
              lambda key: f"the keyword argument for '{key}'")
        for shorter, longer, factor in RELATIONS:
            if shorter in values and longer in values and (
                    values[longer] < factor * values[shorter]):
                raise ConfigError(
                    f"Config key '{longer}' ({values[longer]!r}, from {wheres[longer]}) must "
                    f"be at least {factor} x '{shorter}' ({values[shorter]!r}, from "
                    f"{wheres[shorter]}): a timeout shorter than that reports live "
                    "processes as lost.")
        return cls(values, sources)

    def __getitem__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise ConfigError(f"Unknown config key '{key}'.") from None

    def source(self, key):
        """Where the effective value of ``key`` came from."""
        return self._sources[key]

    def to_dict(self):
        return dict(self._values)

    @property
    def home(self):
        """``store.home``, expanded."""
        return Path(os.path.expanduser(self["store.home"]))

    @property
    def store_uri(self):
        """Where jobs live: ``store.uri`` or ``<home>/jobs``."""
        return self["store.uri"] or str(self.home / "jobs")

    @property
    def session_dir(self):
        """This machine's registry of jobs and environments (always local)."""
        return self.home / "session"


def load(**overrides):
    """The effective configuration, with ``overrides`` (``{"section.key": value}``) on top."""
    return Config.load(overrides=overrides)
