"""Configuration, with one precedence implemented once.

Lowest first: the shipped ``defaults.toml`` (``dato_dist.conf``) < the user file (``$DATO_DIST_CONFIG`` or
``~/.dato_dist/config.toml``) < environment variables (``DATO_DIST_<SECTION>_<KEY>``;
``DATO_DIST_HOME`` is ``store.home``) < keyword arguments (``load(overrides=...)``).

Keys are ``section.key``; every key must exist in the shipped defaults, and a value from
a file or the environment is converted to the default's type.
"""

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

        def apply(layer, source):
            for key, value in layer.items():
                if key not in defaults:
                    raise ConfigError(
                        f"Unknown config key '{key}' in {source}. Known keys: "
                        + ", ".join(sorted(defaults))
                    )
                values[key] = _convert(key, value, defaults[key], source)
                sources[key] = source

        user = user_config_path(environ)
        if user.is_file():
            apply(_read_toml(user), str(user))
        env_layer = {}
        for name, value in environ.items():
            if name in _ENV_ALIASES:
                env_layer[_ENV_ALIASES[name]] = value
            elif name.startswith(_ENV_PREFIX) and name != "DATO_DIST_CONFIG":
                section, _, key = name[len(_ENV_PREFIX):].lower().partition("_")
                dotted = f"{section}.{key}"
                if dotted in defaults:
                    env_layer[dotted] = value
        for key, value in env_layer.items():
            apply({key: value}, "the environment")
        apply({k: v for k, v in (overrides or {}).items() if v is not None}, "arguments")
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
