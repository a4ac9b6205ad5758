#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""Across every suite: each check an inspection reports is declared.

Every verdict the engine builds in this process (:func:`engine.decide`
and the container layers' ``build``) is recorded while the tests run; at
the end of the session a check name that no inspector, container or the
engine declares (see :mod:`glance_vsize.checks`) fails the run, naming
the test that met it.  So the images of every suite, hostile ones
included, back the static proof of tests/unit/test_checks.py.
"""

import sys

import pytest

from glance_vsize import checks
from glance_vsize.containers import base as containers_base
from glance_vsize import engine

#: check name -> the first test whose inspection reported it.
SEEN: dict[str, str] = {}
_current = ['(collection)']


def _record(result):
    for name in (*result.failures, *result.warnings):
        SEEN.setdefault(name, _current[0])
    return result


def pytest_configure(config):
    decide, build = engine.decide, containers_base.ContainerInspector.build

    def recording_decide(*args, **kwargs):
        return _record(decide(*args, **kwargs))

    def recording_build(self, *args, **kwargs):
        return _record(build(self, *args, **kwargs))

    engine.decide = recording_decide
    containers_base.ContainerInspector.build = recording_build


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current[0] = item.nodeid
    yield


def pytest_sessionfinish(session, exitstatus):
    undeclared = sorted(set(SEEN) - set(checks.names()))
    if undeclared:
        sys.stderr.write('\nUndeclared check names reported: %s\n' % ', '.join(
            '%s (first in %s)' % (name, SEEN[name]) for name in undeclared))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
