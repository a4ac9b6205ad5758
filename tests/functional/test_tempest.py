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

"""The Tempest plugin (glance_vsize_tempest_plugin) against a real Glance
and Keystone: tools/run-tempest --data-dir on a Glance started by
tools/run-glance; every test of the plugin must pass, none skipped."""

import os
import re
import subprocess
import time

import pytest

from tests.functional import glance as glance_mod
from tests import helpers

# Among the slowest (Tempest, about 90 s a release): run on the newest
# release only (README, "Supported releases").
pytestmark = [helpers.requires_qemu_img, pytest.mark.slow_newest_only]


def _count(name, output):
    found = re.findall(r'^ - %s: (\d+)$' % name, output, re.M)
    assert found, 'no "%s: N" in the output of run-tempest:\n%s' % (
        name, output[-5000:])
    return int(found[-1])


def test_tempest_plugin_passes(tmp_path):
    api = glance_mod.Glance(tmp_path / 'glance')
    try:
        started = time.monotonic()
        proc = subprocess.run(
            [os.path.join(glance_mod.REPO, 'tools', 'run-tempest'),
             '--data-dir', api.data_dir], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=1800)
        elapsed = time.monotonic() - started
    finally:
        api.stop()
    output = proc.stdout
    print('tools/run-tempest took %.0f s' % elapsed)
    assert _count('Failed', output) == 0, output[-20000:]
    assert _count('Passed', output) > 0, output[-5000:]
    # The lab has every tool, two stores and the import methods: a skip
    # would be a check that silently did not run.
    assert _count('Skipped', output) == 0, output[-20000:]
    assert proc.returncode == 0, output[-5000:]
