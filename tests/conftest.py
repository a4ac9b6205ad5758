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
and the container layers' ``build``) is recorded while the tests run:
each check a probe of one of the package's inspectors failed must be in
that inspector's ``CHECKS`` (or the engine's), each check of a container
layer in the layer's, and each check of the verdict must be declared
somewhere, or come from a test's own stand-in inspector.  At the end of
the session an undeclared check fails the run, naming the test that met
it.  So the images of every suite, hostile ones included, back the
static proof of tests/unit/test_checks.py.
"""

import sys

import pytest

from glance_vsize import checks
from glance_vsize.containers import base as containers_base
from glance_vsize import engine

#: (check name, who reported it) -> the first test that met it.
UNDECLARED: dict[tuple[str, str], str] = {}
_current = ['(collection)']


def _ours(obj):
    return type(obj).__module__.startswith('glance_vsize.')


def _expect(names, declared, who):
    for name in names:
        if name not in declared and name not in checks.ENGINE_CHECKS:
            UNDECLARED.setdefault((name, who), _current[0])


def _record_decide(probes, result):
    known = set(checks.names())
    for probe in probes:
        if _ours(probe.inspector):
            _expect(probe.failures, probe.inspector.CHECKS, probe.name)
        else:
            known |= set(probe.failures)
    _expect((*result.failures, *result.warnings), known, 'the verdict')


def pytest_configure(config):
    decide, build = engine.decide, containers_base.ContainerInspector.build

    def recording_decide(probes, *args, **kwargs):
        result = decide(probes, *args, **kwargs)
        _record_decide(probes, result)
        return result

    def recording_build(self, inner, where, final, extra=None):
        result = build(self, inner, where, final, extra)
        if _ours(self):
            _expect((*self.failures, *(extra or {})), self.CHECKS,
                    self.name)
            _expect((*result.failures, *result.warnings), checks.names(),
                    'the %s verdict' % self.name)
        return result

    engine.decide = recording_decide
    containers_base.ContainerInspector.build = recording_build


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current[0] = item.nodeid
    yield


def pytest_sessionfinish(session, exitstatus):
    if UNDECLARED:
        sys.stderr.write('\nUndeclared check names reported: %s\n' % ', '.join(
            '%s by %s (first in %s)' % (name, who, test)
            for (name, who), test in sorted(UNDECLARED.items())))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
