"""Bootstrap with host modules (spark-ec2's init/setup/test/run), over a :class:`HostSet`.

A module is a folder with optional ``init.sh`` (install: what could be baked into an
image), ``setup.sh`` (start services; the cluster's host list is known), ``test.sh``
(health checks) and ``run.sh`` (user applications). Phases run in that order; within a
phase every module runs in the configured order, on all hosts in parallel; a phase that
fails on any host stops the bootstrap with that host's output in the error.

Everything a host needs travels in one bundle (a tar.gz copied over SFTP)::

    bundle/modules/<name>/*.sh     built-in (ec2/modules) and the user's extra modules
    bundle/modules.txt             the module order
    bundle/vars.sh                 cluster variables (DATO_HOSTS, DATO_HEAD, ...)
    bundle/user-vars.sh            the user's variables override file, sourced after
    bundle/root/                   the deploy root dir's files
    bundle/packages/               bootstrap_python_packages (globs expanded here)
    bundle/dist/                   the client's dato_dist wheel (dato_dist.wheel: a wheel of
                                   the installed dato-dist, however it was installed) and
                                   constraints.txt (the client's cloudpickle version) when
                                   hosts get a venv (host_python unset)
    bundle/additional_packages.txt, bootstrap_cmds.sh
    bundle/run-phase.sh            runs one phase of every module
"""

import glob
import io
import logging
import os
import shlex
import tarfile

import dato_dist
from dato_dist import wheel
from dato_dist.errors import InvalidArgument

log = logging.getLogger(__name__)

PHASES = ("init", "setup", "test", "run")
BUILTIN_MODULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "modules")

RUN_PHASE = r"""#!/bin/bash
# run-phase.sh PHASE: run PHASE.sh of every module, in order (written by ec2/bootstrap.py)
phase="$1"
cd "$DATO_BUNDLE" || exit 1
set -a
. ./vars.sh
[ -f ./user-vars.sh ] && . ./user-vars.sh
set +a
while read -r m; do
  [ -z "$m" ] && continue
  script="$DATO_BUNDLE/modules/$m/$phase.sh"
  [ -f "$script" ] || continue
  echo "[bootstrap] $DATO_HOST_ID: $m/$phase.sh"
  if ! (cd "$DATO_BUNDLE/modules/$m" && bash "$script"); then
    echo "[bootstrap] $m/$phase.sh failed on $DATO_HOST_ID ($DATO_HOST_IP)" >&2
    exit 1
  fi
done < "$DATO_BUNDLE/modules.txt"
"""


def _add_bytes(tar, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def module_dirs(modules, extra_modules):
    """``[(name, folder)]`` in run order: the ``modules`` (built-in names or folders), then
    the ``extra_modules`` folders. Raises :class:`InvalidArgument` for one that is missing."""
    out = []
    for name in modules:
        path = name if os.path.isdir(name) else os.path.join(BUILTIN_MODULES, name)
        if not os.path.isdir(path):
            raise InvalidArgument(
                f"Ec2Config: no host module {name!r}: it is neither a folder nor one of the "
                f"built-in modules ({', '.join(sorted(os.listdir(BUILTIN_MODULES)))}). Fix "
                "Ec2Config(modules=...).")
        out.append((os.path.basename(path.rstrip("/")), path))
    for path in extra_modules:
        if not os.path.isdir(path):
            raise InvalidArgument(f"Ec2Config: extra module folder {path!r} does not exist. "
                                  "Fix Ec2Config(extra_modules=...).")
        out.append((os.path.basename(path.rstrip("/")), path))
    return out


def _module_dirs(config):
    return module_dirs(config.modules, config.extra_modules)


def _client_constraints():
    """Pins of the packages whose versions must match the client's: a function pickled by
    one cloudpickle version is only guaranteed to load with the same version."""
    from importlib import metadata

    pins = []
    for name in ("cloudpickle",):
        try:
            pins.append(f"{name}=={metadata.version(name)}\n")
        except metadata.PackageNotFoundError:
            pass
    return "".join(pins)


def build_bundle(config, *, cluster_name, hosts, additional_packages):
    """The bundle every host gets, as tar.gz bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        names = []
        for name, path in _module_dirs(config):
            names.append(name)
            for phase in PHASES:
                script = os.path.join(path, f"{phase}.sh")
                if os.path.isfile(script):
                    tar.add(script, arcname=f"modules/{name}/{phase}.sh")
            for extra in sorted(os.listdir(path)):  # helper files next to the scripts
                full = os.path.join(path, extra)
                if os.path.isfile(full) and extra not in {f"{p}.sh" for p in PHASES}:
                    tar.add(full, arcname=f"modules/{name}/{extra}")
        _add_bytes(tar, "modules.txt", ("\n".join(names) + "\n").encode())
        variables = {
            "DATO_CLUSTER": cluster_name,
            "DATO_HOSTS": " ".join(h.private_ip for h in hosts),
            "DATO_HEAD": hosts[0].private_ip,
            "DATO_NUM_HOSTS": str(len(hosts)),
            "DATO_VERSION": dato_dist.__version__,
            "DATO_IDLE_ACTION": config.idle_action,
            "DATO_ADDITIONAL_PACKAGES": " ".join(additional_packages),
        }
        _add_bytes(tar, "vars.sh", "".join(f"{k}={shlex.quote(v)}\n"
                                           for k, v in variables.items()).encode())
        if config.variables_file:
            tar.add(os.path.expanduser(config.variables_file), arcname="user-vars.sh")
        if config.deploy_root_dir:
            tar.add(os.path.expanduser(config.deploy_root_dir), arcname="root")
        for pattern in config.bootstrap_python_packages:
            matches = sorted(glob.glob(os.path.expanduser(pattern)))
            if not matches:
                raise InvalidArgument(f"Ec2Config: bootstrap_python_packages pattern "
                                      f"{pattern!r} matches no file")
            for m in matches:
                tar.add(m, arcname=f"packages/{os.path.basename(m)}")
        _add_bytes(tar, "additional_packages.txt",
                   "".join(p + "\n" for p in additional_packages).encode())
        _add_bytes(tar, "bootstrap_cmds.sh",
                   "".join(c + "\n" for c in config.bootstrap_cmds).encode())
        _add_bytes(tar, "run-phase.sh", RUN_PHASE.encode(), mode=0o755)
        if config.host_python is None and "python" in names:
            whl = wheel.build()
            tar.add(str(whl), arcname=f"dist/{whl.name}")
            _add_bytes(tar, "dist/wheel_hash", f"{whl.parent.name}\n".encode())
            _add_bytes(tar, "dist/constraints.txt", _client_constraints().encode())
    return buf.getvalue()


def host_env(config, host):
    """The per-host variables of every phase."""
    env = {"DATO_BASE": host.base, "DATO_BUNDLE": f"{host.base}/bundle",
           "DATO_PYTHON": host_python(config, host), "DATO_HOST_INDEX": str(host.index),
           "DATO_HOST_ID": host.instance_id, "DATO_HOST_IP": host.private_ip,
           "DATO_HOST_ROLE": host.role, "DATO_DEPLOY_ROOT": f"{host.base}/bundle/root"}
    if config.host_python:
        env["DATO_HOST_PYTHON_GIVEN"] = "1"
    return env


def host_python(config, host):
    return config.host_python or f"{host.base}/venv/bin/python"


def run(config, hostset, *, cluster_name, additional_packages, timeout=1800.0):
    """Copy the bundle to every host and run the phases; raises ``HostsFailed``."""
    hosts = hostset.hosts
    bundle = build_bundle(config, cluster_name=cluster_name, hosts=hosts,
                          additional_packages=additional_packages)
    hostset.put_each(lambda h: (bundle, f"{h.base}/bundle.tgz"), step="copy bundle")
    hostset.run_all(lambda h: f"cd {shlex.quote(h.base)} && rm -rf bundle && mkdir bundle && "
                              "tar xzf bundle.tgz -C bundle", step="unpack bundle", timeout=120)
    for phase in PHASES:
        log.info("Bootstrap phase '%s' on %d host(s)", phase, len(hosts))
        hostset.run_all(
            lambda h, phase=phase: "bash -c " + shlex.quote(
                f"set -o pipefail; bash {shlex.quote(h.base)}/bundle/run-phase.sh {phase} 2>&1 "
                f"| tee -a {shlex.quote(h.base)}/bootstrap.log"),
            env=lambda h: host_env(config, h), step=f"bootstrap {phase}", timeout=timeout)
