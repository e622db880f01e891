"""The one backend registry: where each backend lives and what it needs.

Core code never imports a backend (skein, boto3, fabric) at module load. Every core entry
point that reaches a backend (``gl.aws``, the cluster names of ``gl.deploy``, the legacy
``environment.EC2`` / ``environment.Hadoop``, loading a job, ``dato-dist ec2|hadoop``) goes
through :func:`load` or :func:`require`, which have one policy for a missing extra:

- an ``ImportError`` whose ``name`` is one of the extra's third-party modules (or a module
  inside one) means the extra is not installed (or is broken): :class:`BackendUnavailable`
  naming ``pip install 'dato-dist[<extra>]'``;
- any other ``ImportError`` is a bug inside the backend and is raised unchanged.
"""

import importlib
import importlib.util
from dataclasses import dataclass, field

from .errors import BackendUnavailable, InvalidArgument


@dataclass(frozen=True)
class Backend:
    """One backend: its package, its pip extra and the names it gives the facade."""

    #: Short name, as in ``dato-dist <cli>`` ("local", "ec2", "yarn").
    name: str
    #: What users call it in messages ("EC2", "Hadoop").
    title: str
    #: The pip extra that installs its third-party modules (None: needs nothing extra).
    extra: str = None
    #: The extra's third-party modules; a missing one means "install the extra".
    requires: tuple = ()
    #: Environment type name (``to_dict()["type"]``) -> "module:Class".
    environments: dict = field(default_factory=dict)
    #: ``gl.deploy.<name>`` -> "module:attr" (or "module" for a module itself).
    deploy_names: dict = field(default_factory=dict)
    #: ``gl.<name>`` -> "module".
    top_names: dict = field(default_factory=dict)
    #: "module:function" that adds the backend's subcommands to ``dato-dist`` (its module
    #: must import without the extra: commands import what they need when they run).
    cli: str = None


BACKENDS = {
    "local": Backend(
        name="local", title="local",
        environments={"Local": "dato_dist.environments.local:Local",
                      "LocalAsync": "dato_dist.environments.local:LocalAsync"}),
    "yarn": Backend(
        name="yarn", title="Hadoop", extra="yarn",
        requires=("skein", "hdfs_native", "venv_pack", "grpc", "google.protobuf"),
        environments={"HadoopCluster": "dato_dist.yarn_app.cluster:HadoopCluster"},
        deploy_names={"HadoopCluster": "dato_dist.yarn_app.cluster:HadoopCluster",
                      "hadoop_cluster": "dato_dist.yarn_app.cluster"},
        cli="dato_dist.yarn_app.cli:add_parser"),
    "ec2": Backend(
        name="ec2", title="EC2", extra="ec2",
        requires=("boto3", "botocore", "fabric", "paramiko", "invoke"),
        environments={"Ec2Cluster": "dato_dist.ec2.cluster:Ec2Cluster"},
        deploy_names={"Ec2Config": "dato_dist.ec2.config:Ec2Config",
                      "Ec2Cluster": "dato_dist.ec2.cluster:Ec2Cluster",
                      "ec2_cluster": "dato_dist.ec2.cluster"},
        top_names={"aws": "dato_dist.ec2.aws"},
        cli="dato_dist.ec2.cli:add_parser"),
}


def _index(attr):
    return {key: (backend, target) for backend in BACKENDS.values()
            for key, target in getattr(backend, attr).items()}


#: Environment type name -> (Backend, "module:Class").
ENVIRONMENTS = _index("environments")
#: ``gl.deploy`` name -> (Backend, target).
DEPLOY_NAMES = _index("deploy_names")
#: ``gl`` name -> (Backend, target).
TOP_NAMES = _index("top_names")


def backend(name):
    """The :class:`Backend` called ``name`` ("local", "yarn", "ec2")."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise InvalidArgument(f"Unknown backend '{name}'; known: {', '.join(BACKENDS)}") from None


def is_extra_module(backend_, module_name):
    """Whether ``module_name`` is one of ``backend_``'s third-party modules or inside one."""
    return bool(module_name) and any(module_name == m or module_name.startswith(m + ".")
                                     for m in backend_.requires)


def _unavailable(backend_, cause):
    return BackendUnavailable(backend=backend_.title, extra=backend_.extra, cause=cause)


def require(backend_):
    """Raise :class:`BackendUnavailable` unless every module of the extra can be found.

    A cheap check (``find_spec``, nothing is imported), so a backend whose own modules import
    their dependencies only when called still fails at its entry point, not later.
    """
    if isinstance(backend_, str):
        backend_ = backend(backend_)
    for module_name in backend_.requires:
        try:
            found = importlib.util.find_spec(module_name) is not None
        except ImportError:  # a parent package ("google") is missing
            found = False
        except ValueError:  # in sys.modules with no __spec__: it was imported, so it is there
            found = True
        if not found:
            raise _unavailable(backend_, f"No module named '{module_name}'") from None
    return backend_


def import_module(backend_, module_name):
    """Import ``module_name`` of ``backend_`` with the one missing-extra policy."""
    require(backend_)
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        if is_extra_module(backend_, e.name):
            raise _unavailable(backend_, e) from None
        raise


def load(backend_, target):
    """``"module:attr"`` (or ``"module"``) of ``backend_``, imported with :func:`import_module`."""
    module_name, _, attr = target.partition(":")
    module = import_module(backend_, module_name)
    return getattr(module, attr) if attr else module


def translate(backend_, error):
    """``error`` (an ImportError raised while a backend ran) as :class:`BackendUnavailable`
    when it names one of the extra's modules, else ``None``."""
    if isinstance(error, ImportError) and not isinstance(error, BackendUnavailable) \
            and is_extra_module(backend_, error.name):
        return _unavailable(backend_, error)
    return None


def environment_class(type_name):
    """The environment class registered for ``type_name`` (``to_dict()["type"]``)."""
    try:
        backend_, target = ENVIRONMENTS[type_name]
    except KeyError:
        raise InvalidArgument(f"Unknown environment type '{type_name}'; known: "
                              f"{', '.join(ENVIRONMENTS)}") from None
    return load(backend_, target)


def add_cli(sub):
    """Add every backend's subcommands to the ``dato-dist`` subparsers ``sub``.

    Each backend's top parser gets ``backend=<name>`` as a default, so :mod:`dato_dist.cli`
    checks the extra before running one of its commands.
    """
    for backend_ in BACKENDS.values():
        if backend_.cli:
            module_name, _, func = backend_.cli.partition(":")
            parser = getattr(importlib.import_module(module_name), func)(sub)
            parser.set_defaults(backend=backend_.name)
