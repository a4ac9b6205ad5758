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


"""Fixtures shared by the functional tests."""

import os
import shutil
import tempfile

import pytest

from tests import imagegen


@pytest.fixture(scope='session')
def corpus(tmp_path_factory):
    """``(outdir, entries)``: the generator's images (no 3 TiB ones), made
    once for every functional test module; read-only for the tests.
    """
    outdir = str(tmp_path_factory.mktemp('images'))
    return outdir, imagegen.build(outdir, huge=False)


@pytest.fixture(scope='module')
def pg_lab_dir():
    """An empty lab DIR for ``tools/run-glance`` with the lab's PostgreSQL
    (tools/lab/postgres.py, installed here when missing; skipped, saying
    why, where it cannot be), removed after the module.  Made in the
    system's temporary directory with mode 0711: as root, PostgreSQL runs
    as user postgres, who cannot enter pytest's 0700 directories.
    """
    from tests.functional.glance import postgres
    try:
        postgres.ensure_installed(say=lambda text: None)
    except postgres.Unavailable as exc:
        pytest.skip(str(exc))
    path = tempfile.mkdtemp(prefix='glance-vsize-lab-')
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# Releases ------------------------------------------------------------------
# $GLANCE_RELEASE picks the release (tests/functional/glance.py).  Two
# markers, listed in README "Supported releases":
#   @pytest.mark.slow_newest_only: among the slowest tests; left out on the
#       older releases (run on the newest only) to keep CI's time, unless
#       $GLANCE_VSIZE_SLOW_EVERYWHERE is 1.
#   @pytest.mark.glance_fixed_in('R', 'why'): needs a Glance fix first
#       released in R; skipped before R with Glance's reason.

def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow_newest_only: one of the slowest functional tests, '
        'run on the newest release only (GLANCE_RELEASE)')
    config.addinivalue_line(
        'markers', 'glance_fixed_in(release, why): needs a Glance fix '
        'first released in RELEASE; skipped on older releases')


def pytest_collection_modifyitems(config, items):
    from tests.functional.glance import RELEASE
    from tests.functional.glance import releases
    order = list(releases.RELEASES)
    newest = (RELEASE.name == releases.NEWEST
              or os.environ.get('GLANCE_VSIZE_SLOW_EVERYWHERE') == '1')
    for item in items:
        if not newest and item.get_closest_marker('slow_newest_only'):
            item.add_marker(pytest.mark.skip(
                reason='slow_newest_only: run on %s only, not on %s'
                % (releases.NEWEST, RELEASE.name)))
        fixed = item.get_closest_marker('glance_fixed_in')
        if fixed and order.index(RELEASE.name) < order.index(fixed.args[0]):
            item.add_marker(pytest.mark.skip(
                reason='Glance of %s: %s (fixed in %s)'
                % (RELEASE.name, fixed.args[1], fixed.args[0])))
