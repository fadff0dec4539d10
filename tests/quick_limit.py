"""A pytest plugin (its hooks are imported by conftest.py): with ``--max-unmarked-s S`` the run fails when a test
not marked ``slow`` took longer than S seconds, setup and teardown included, so the quick loop stays quick.
``.ci/run`` sets 10 s and prints the slowest tests (``--durations``)."""

from __future__ import annotations

import pytest

_seconds: dict[str, float] = {}


def pytest_addoption(parser):
    parser.addoption("--max-unmarked-s", type=float, default=None, metavar="S",
                     help="fail the run when a test not marked slow takes longer than S seconds (.ci/run: 10)")


def pytest_runtest_logreport(report):
    _seconds[report.nodeid] = _seconds.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session, exitstatus):
    limit = session.config.getoption("--max-unmarked-s")
    if limit is None:
        return
    slow = {item.nodeid for item in session.items if item.get_closest_marker("slow")}
    over = sorted(((t, n) for n, t in _seconds.items() if n not in slow and t > limit), reverse=True)
    if over:
        write = session.config.pluginmanager.get_plugin("terminalreporter").write_line
        write(f"{len(over)} test(s) not marked slow took more than {limit:g} s; mark them @pytest.mark.slow or "
              "make them quicker:")
        for t, n in over:
            write(f"  {t:6.1f} s  {n}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
