"""Reruns on this machine, beyond the contract suite (tests/contract/test_rerun_contract.py):
the exclusive claim in the store, a claim left by a client that died, a planted claim, a
rerun without the job's key, a lost results file, a plain job and a combiner."""

import json
import os
import subprocess
import sys
import time

import pytest

import dato_dist as gl
from dato_dist.errors import RerunRefused, ResultsMissing
from dato_dist.jobfiles import RERUNS_DIR
from tests.conftest import REPO
from tests.contract import rerun_tasks


@pytest.fixture
def env():
    return gl.deploy.environment.LocalAsync("rerun-tests", num_workers=2)


def _failed_job(env, folder, n=4, **kwargs):
    job = gl.deploy.map_job.create(rerun_tasks.fails_until_fixed,
                                   [{"i": i, "folder": str(folder)} for i in range(n)],
                                   environment=env, **kwargs)
    assert job.wait(timeout=60) == "Completed", job.get_error()
    return job


def test_claim_is_exclusive(env, tmp_path):
    job = _failed_job(env, tmp_path)
    files = job._files
    assert files.claim_rerun(7, {"run": 7, "claimed": time.time()})
    assert not files.claim_rerun(7, {"run": 7, "claimed": time.time()})
    assert files.rerun_numbers() == [7]
    assert files.read_rerun(7)["run"] == 7


def test_a_fresh_claim_of_another_client_refuses_a_stale_one_does_not(env, tmp_path):
    job = _failed_job(env, tmp_path)
    job._files.claim_rerun(2, {"run": 2, "claimed": time.time(), "client": "other:1"})
    with pytest.raises(RerunRefused, match=r"another rerun of it \(run 2\) was started \d+ s "
                                           r"ago by other:1.*dato-dist job wait"):
        job.rerun(failed_only=True)
    assert job._files.read_state()["status"] == "Completed"  # nothing changed
    # A claim whose client died before it started blocks for STALE_CLAIM seconds only.
    os.remove(os.path.join(job.uri, RERUNS_DIR, "000002.json"))
    job._files.claim_rerun(2, {"run": 2, "claimed": time.time() - 120, "client": "dead:1"})
    open(tmp_path / "fixed", "w").close()
    job.rerun(failed_only=True)
    assert job.wait(timeout=60) == "Completed", job.get_error()
    assert job._files.read_state()["run"] == 3
    assert [r[0] for r in job.get_map_results()] == [0, 1, 2, 3]


def test_a_planted_claim_is_ignored(env, tmp_path):
    """Someone who can write the store but has not the job's key plants a claim: it blocks
    nothing and no driver acts on it."""
    job = _failed_job(env, tmp_path)
    planted = os.path.join(job.uri, RERUNS_DIR, "000002.json")
    os.makedirs(os.path.dirname(planted), exist_ok=True)
    with open(planted, "w") as f:
        json.dump({"run": 2, "failed_only": False, "results_files": 0,
                   "claimed": time.time()}, f)
    open(tmp_path / "fixed", "w").close()
    job.rerun(failed_only=True)
    assert job.wait(timeout=60) == "Completed", job.get_error()
    assert job._files.read_state()["run"] == 3
    assert rerun_tasks.runs(tmp_path, 4) == [1, 2, 1, 2]  # failed only, as the owner asked
    assert "ignored a rerun request" not in "".join(job.read_logs().values())


def test_rerun_without_the_jobs_key_is_refused(env, tmp_path):
    job = _failed_job(env, tmp_path)
    other = dict(os.environ, DATO_DIST_KEY="ab" * 32)  # another user's key
    out = subprocess.run([sys.executable, "-m", "dato_dist.cli", "job", "rerun", job.uri,
                          "--failed"], capture_output=True, text=True, timeout=120, cwd=REPO,
                         env=other, stdin=subprocess.DEVNULL)
    assert out.returncode != 0
    assert "signature does not match" in out.stderr and "key" in out.stderr, out.stderr
    assert job._files.rerun_numbers() == []
    assert job._files.read_state()["status"] == "Completed" and "run" not in \
        job._files.read_state()


def test_a_lost_results_file_refuses_the_rerun(env, tmp_path):
    job = _failed_job(env, tmp_path)
    os.remove(os.path.join(job.uri, "results", "00000000.pkl"))
    with pytest.raises(ResultsMissing, match="00000000.pkl"):
        job.rerun(failed_only=True)
    assert job._files.rerun_numbers() == []


def test_plain_job_whose_function_failed(env, tmp_path):
    job = gl.deploy.job.create(rerun_tasks.fails_until_fixed, i=1, folder=str(tmp_path),
                               environment=env)
    assert job.wait(timeout=60) == "Failed"
    open(tmp_path / "fixed", "w").close()
    job.rerun(failed_only=True)
    assert job.get_results()[0] == 1
    assert job.get_status() == "Completed" and job.get_error() is None
    assert job.get_metrics()["attempts"] == [2]


def test_the_combiner_runs_again_over_the_final_results(env, tmp_path):
    job = _failed_job(env, tmp_path, combiner_function=rerun_tasks.completed_tasks)
    assert job.get_results() == 2  # tasks 1 and 3 failed: None
    open(tmp_path / "fixed", "w").close()
    job.rerun(failed_only=True)
    assert job.get_results() == 4
    assert rerun_tasks.runs(tmp_path, 4) == [1, 2, 1, 2]


def test_a_canceled_job_reruns_what_did_not_finish(env, tmp_path):
    job = gl.deploy.map_job.create(rerun_tasks.slow_until_released,
                                   [{"i": i, "folder": str(tmp_path), "fast": 2}
                                    for i in range(4)], environment=env)
    deadline = time.monotonic() + 30
    while job.get_map_results(wait=False) is None or \
            sum(r is not None for r in job.get_map_results(wait=False)) < 2:
        assert time.monotonic() < deadline, "the fast tasks did not complete"
        time.sleep(0.1)
    kept = job.get_map_results(wait=False)[:2]
    job.cancel()
    assert job.get_status() == "Canceled"
    open(tmp_path / "release", "w").close()
    job.rerun(failed_only=True)
    assert job.wait(timeout=60) == "Completed", job.get_error()
    assert job.get_map_results()[:2] == kept
    assert rerun_tasks.runs(tmp_path, 4)[:2] == [1, 1]


def test_a_rerun_whose_client_died_before_the_start(env, tmp_path):
    """Its Pending state blocks a rerun for rerun.STALE_CLAIM seconds, then no longer."""
    from dato_dist import rerun

    job = _failed_job(env, tmp_path)
    files = job._files
    files.claim_rerun(2, {"run": 2, "claimed": time.time() - 2 * rerun.STALE_CLAIM,
                          "client": "dead:1"})
    files.remove_launch()
    files.write_state({"status": "Pending", "run": 2, "results_files": 1})
    job = gl.deploy.job.load(job.uri)
    assert job.get_status() == "Pending"
    open(tmp_path / "fixed", "w").close()
    job.rerun(failed_only=True)
    assert job.wait(timeout=60) == "Completed", job.get_error()
    state = job._files.read_state()
    assert state["run"] == 3 and "never started" in state["previous_runs"][-1]["error"]
    assert rerun_tasks.runs(tmp_path, 4) == [1, 2, 1, 2]
