"""Tests of the Hadoop backend; the ``minicluster`` fixture is in tests/conftest.py.

On a failed test, the YARN logs of every application it started are printed.
"""

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        apps = getattr(item, "yarn_apps", [])
        cluster = item.funcargs.get("minicluster")
        for app_id in apps:
            if cluster is not None and app_id:
                logs = cluster.yarn("logs", "-applicationId", app_id).stdout
                report.sections.append((f"yarn logs -applicationId {app_id}", logs[-30000:]))


@pytest.fixture
def yarn_apps(request, minicluster):
    """Register YARN application ids here: their logs are printed if the test fails, and
    any still running at the end of the test is killed (so no test leaves one behind)."""
    request.node.yarn_apps = []
    yield request.node.yarn_apps
    for app_id in request.node.yarn_apps:
        if app_id:
            status = minicluster.yarn("application", "-status", app_id).stdout
            if any(f"State : {s}" in status for s in ("RUNNING", "ACCEPTED", "SUBMITTED")):
                minicluster.yarn("application", "-kill", app_id)
