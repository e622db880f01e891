"""dato_dist.wheel: the wheel of the running dato-dist that clusters get."""

import os
import stat
import subprocess
import sys
import zipfile

import pytest

from dato_dist import _version, wheel
from dato_dist.errors import PackagingError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DATO_DIST_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_wheel_is_cached_by_content_hash_in_a_private_folder(cache):
    path = wheel.build()
    assert path.name == f"dato_dist-{_version.__version__}-py3-none-any.whl"
    assert path.parent == cache / "wheels" / wheel.content_hash()
    for folder in (path.parent, path.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    assert wheel.build() == path and path.stat().st_mtime_ns == mtime  # reused, not rebuilt
    path.unlink()
    assert wheel.build().read_bytes() == data  # same content, same bytes


def test_wheel_holds_the_package_data_and_a_valid_record(cache):
    import base64
    import hashlib

    with zipfile.ZipFile(wheel.build()) as zf:
        names = zf.namelist()
        info = f"dato_dist-{_version.__version__}.dist-info"
        assert "dato_dist/conf/defaults.toml" in names
        assert "dato_dist/ec2/modules/python/init.sh" in names
        assert "dato_dist/yarn_app/dist.py" in names and "dato_dist/deploy/job.py" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert {n.split("/")[0] for n in names} == {"dato_dist", info}
        assert zf.read(f"{info}/top_level.txt") == b"dato_dist\n"
        assert b"dato-dist = dato_dist.cli:main" in zf.read(f"{info}/entry_points.txt")
        assert b"Requires-Dist: cloudpickle" in zf.read(f"{info}/METADATA")
        rows = [line.split(",") for line in zf.read(f"{info}/RECORD").decode().splitlines()]
        assert sorted(r[0] for r in rows) == sorted(names)
        for name, digest, size in rows:
            if name.endswith("RECORD"):
                continue
            data = zf.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert (digest, int(size)) == (f"sha256={expected.decode()}", len(data)), name


def test_content_hash_follows_every_file():
    files = wheel.contents()
    changed = dict(files, **{"dato_dist/conf/defaults.toml": files["dato_dist/conf/defaults.toml"]
                             + b"\n# changed\n"})
    assert wheel.content_hash(files) == wheel.content_hash()
    assert wheel.content_hash(changed) != wheel.content_hash(files)
    renamed = {k.replace("driver.py", "driver2.py"): v for k, v in files.items()}
    assert wheel.content_hash(renamed) != wheel.content_hash(files)


def test_a_dato_dist_without_metadata_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(wheel, "DIST_NAME", "dato-dist-not-installed")
    with pytest.raises(PackagingError, match="Install it with pip"):
        wheel.contents()


@pytest.mark.slow
def test_wheel_installs_with_pip_into_a_fresh_venv(cache, tmp_path):
    """pip accepts the wheel; the installed copy has only dato_dist at top level, its data
    files, and the same content hash as the client (what EC2 hosts check)."""
    path = wheel.build()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    out = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                          "--no-deps", "--disable-pip-version-check", str(path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    site = next((venv / "lib").glob("python*/site-packages"))
    assert sorted(p.name for p in site.iterdir() if not p.name.startswith("_")) == \
        ["dato_dist", f"dato_dist-{_version.__version__}.dist-info"]
    assert (site / "dato_dist" / "conf" / "defaults.toml").is_file()
    assert len(list((site / "dato_dist" / "ec2" / "modules").glob("*/*.sh"))) >= 3
    assert os.access(venv / "bin" / "dato-dist", os.X_OK)
    probe = subprocess.run(
        [str(python), "-c", "from dato_dist import wheel; import dato_dist; "
         "print(wheel.content_hash(), dato_dist.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env={"PATH": os.defpath})
    assert probe.returncode == 0, probe.stderr
    installed_hash, module = probe.stdout.split()
    assert module.startswith(str(site))
    assert installed_hash == path.parent.name


def test_ec2_bundle_carries_the_wheel_when_hosts_get_a_venv(cache):
    """host_python unset: the bundle has the client's wheel and its hash (init.sh needs
    both; it has no package-index fallback); host_python given: no wheel."""
    import io
    import tarfile
    from types import SimpleNamespace

    from dato_dist.ec2 import bootstrap
    from dato_dist.ec2.config import Ec2Config

    hosts = [SimpleNamespace(private_ip="127.0.0.4")]

    def members(**kwargs):
        config = Ec2Config(aws_access_key_id="AKIDTEST", aws_secret_access_key="x", **kwargs)
        data = bootstrap.build_bundle(config, cluster_name="c", hosts=hosts,
                                      additional_packages=[])
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}

    got = members(host_python=None)
    path = wheel.build()
    assert got[f"dist/{path.name}"] == path.read_bytes()
    assert got["dist/wheel_hash"].decode().strip() == wheel.content_hash()
    assert "modules/python/init.sh" in got
    assert not [n for n in members(host_python=sys.executable) if n.startswith("dist/")]
