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

"""tools/lab/debian.py: what the lab says when it cannot install the
Debian packages it needs (Ceph, PostgreSQL).
"""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, 'tools'))

from lab import cephpkg  # noqa: E402
from lab import debian  # noqa: E402
from lab import postgres  # noqa: E402


@pytest.fixture
def unprivileged(monkeypatch, tmp_path):
    """A user who is not root, with no sudo and no apt-get on PATH."""
    monkeypatch.setattr(os, 'geteuid', lambda: 1000)
    monkeypatch.setenv('PATH', str(tmp_path))


def test_no_root_no_sudo_names_the_command_to_run(unprivileged):
    with pytest.raises(debian.CannotInstall) as exc:
        debian.apt_install(['ceph-mon', 'ceph-osd'], 'Ceph (ceph-mon)',
                           say=lambda text: None)
    assert str(exc.value) == (
        'Ceph (ceph-mon) is not installed and this user can neither install '
        'it (not root, no passwordless sudo): apt-get install ceph-mon '
        'ceph-osd')


def test_root_without_apt_get_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(os, 'geteuid', lambda: 0)
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(debian.CannotInstall, match='there is no apt-get'):
        debian.apt_install(['postgresql'], 'PostgreSQL', say=lambda t: None)


def test_ceph_and_postgresql_say_unavailable(
        unprivileged, monkeypatch, tmp_path):
    # Neither Ceph's tools (PATH) nor a PostgreSQL server (BIN_GLOB) is
    # found: both try to install and report why they cannot, which the
    # tests give as their skip reason.
    monkeypatch.setattr(postgres, 'BIN_GLOB', str(tmp_path / '*' / 'bin'))
    with pytest.raises(cephpkg.Unavailable,
                       match=r'^Ceph \(ceph-mon.*\(not root'):
        cephpkg.ensure_installed(say=lambda text: None)
    with pytest.raises(postgres.Unavailable,
                       match=r'^PostgreSQL .*\(not root'):
        postgres.ensure_installed(say=lambda text: None)
