"""The backend registry's one policy: a missing extra vs. a bug inside a backend."""

import sys
import textwrap

import pytest

import dato_dist as gl
from dato_dist import backends
from dato_dist.errors import BackendUnavailable


@pytest.fixture
def fake_backend(tmp_path, monkeypatch):
    """A backend (a registry entry) whose modules are real files in ``tmp_path``."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names = []

    def make(module_source, requires=("no_such_extra_module",)):
        name = f"ddbackend_{len(names)}_{tmp_path.name[-8:].replace('-', '_')}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(module_source))
        names.append(name)
        return backends.Backend(name="fake", title="Fake", extra="fake", requires=requires), name

    yield make
    for name in names:
        sys.modules.pop(name, None)


def test_a_missing_extra_module_names_the_extra(fake_backend):
    backend, module = fake_backend("import no_such_extra_module.sub\n",
                                   requires=("sys", "no_such_extra_module"))
    with pytest.raises(BackendUnavailable) as e:
        backends.load(backend, f"{module}:anything")
    assert "pip install 'dato-dist[fake]'" in str(e.value)
    assert "The Fake backend" in str(e.value)


def test_a_required_module_that_is_absent_fails_before_import(fake_backend):
    backend, module = fake_backend("raise AssertionError('must not be imported')\n")
    with pytest.raises(BackendUnavailable, match="No module named 'no_such_extra_module'"):
        backends.load(backend, module)


def test_an_import_error_inside_the_backend_is_raised_as_is(fake_backend):
    backend, module = fake_backend("import a_typo_in_the_backend\n", requires=("sys",))
    with pytest.raises(ModuleNotFoundError) as e:
        backends.load(backend, module)
    assert not isinstance(e.value, BackendUnavailable)
    assert e.value.name == "a_typo_in_the_backend"


def test_submodules_of_an_extra_count_as_the_extra():
    yarn = backends.backend("yarn")
    assert backends.is_extra_module(yarn, "google.protobuf.reflection")
    assert backends.is_extra_module(yarn, "skein")
    assert not backends.is_extra_module(yarn, "google")
    assert not backends.is_extra_module(yarn, "skeinx")
    assert not backends.is_extra_module(yarn, None)


def test_one_table_feeds_every_facade():
    assert backends.environment_class("LocalAsync").__name__ == "LocalAsync"
    assert gl.deploy.Ec2Config is backends.load(*backends.DEPLOY_NAMES["Ec2Config"])
    assert gl.aws is sys.modules["dato_dist.ec2.aws"]
    assert set(backends.DEPLOY_NAMES) <= set(gl.deploy.__all__)
    types = {t for b in backends.BACKENDS.values() for t in b.environments}
    assert types == {"Local", "LocalAsync", "HadoopCluster", "Ec2Cluster"}
    with pytest.raises(AttributeError):
        gl.deploy.no_such_name  # noqa: B018


def test_core_imports_no_backend_and_job_does_not_import_session():
    import subprocess

    code = ("import sys, dato_dist as gl; gl.deploy; import dato_dist.cli as c; c.build_parser();"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('skein', 'boto3', 'botocore', 'fabric', 'paramiko', 'hdfs_native', 'grpc')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"
    out = subprocess.run([sys.executable, "-c", "import sys, dato_dist.job; "
                          "print('dato_dist.session' in sys.modules)"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
