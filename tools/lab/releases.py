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

"""The OpenStack releases the lab runs, and everything the lab does
differently for one of them (the one place: tools/setup-release-venv and
tools/run-glance read this table).  The releases themselves, their Glance
series and what glance_vsize does or says differently per release are in
glance_vsize/glance/releases.py, loaded here by path.

``python3 tools/lab/releases.py shell RELEASE`` prints the table's row as
shell assignments (standard library only: it runs before any venv).
"""

import dataclasses
import importlib.util
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _glance_releases():
    """glance_vsize.glance.releases, without importing glance_vsize (this
    runs before any venv exists).
    """
    name = 'glance_vsize_releases_table'
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(
            REPO, 'glance_vsize', 'glance', 'releases.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@dataclasses.dataclass(frozen=True)
class Release:
    name: str
    #: The Keystone series beside it (upper-constraints lists neither
    #: service): the same series, which co-installs on every release.
    keystone: str
    #: Where tools/constraints/NAME.txt was copied from.
    requirements_branch: str
    #: Keystone's sqlite transactions begin IMMEDIATE (tools/lab/sqlite.py).
    #: Not with keystone 27, 28 and 29: after the lab's first token request
    #: a connection keeps its transaction open, so under IMMEDIATE the next
    #: token validation (get_project) waits for the write lock until the
    #: busy timeout: HTTP 500 "database is locked" [SQL: BEGIN IMMEDIATE]
    #: (run-glance: "timed out").  Keystone 30 does not.
    #: Keystone needs only the busy timeout (its writes do not read first).
    keystone_sqlite_immediate: bool = True
    #: Settings the lab's ``swift`` backend (``--rgw``) states explicitly.
    #: glance_store 5.2 to 5.4.0 (2025.2's 5.2.0, 2026.1's 5.4.0 under the
    #: constraints) graft every driver option into a backend's section with
    #: the default None (``driver.BackendGroupConfiguration``), and the
    #: swift driver reads two of them from that section raw: every upload
    #: to a swift backend that leaves them unset fails with HTTP 500
    #: (``connection_manager.get_connection``: "unsupported type for
    #: timedelta seconds component: NoneType") and every download
    #: (``store.get``: None > 0), with or without glance_vsize.  Fixed
    #: in glance_store 5.4.1 (e262b50) and 5.6 (f32b259, LP #2146432).
    swift_backend: tuple = ()

    @property
    def glance_release(self):
        return _glance_releases().by_name(self.name)

    @property
    def codename(self) -> str:
        return self.glance_release.codename

    @property
    def glance(self) -> str:
        return 'glance==%d.*' % self.glance_release.glance

    @property
    def constraints(self) -> str:
        return os.path.join('tools', 'constraints', self.name + '.txt')

    @property
    def venv(self) -> str:
        """The newest release keeps the project's .venv (the tests',
        tools/setup-venv's); the others get .venv-NAME.
        """
        return '.venv' if self.name == NEWEST else '.venv-' + self.name


#: The swift backend's settings for glance_store 5.2 to 5.4.0: their
#: defaults, stated (Release.swift_backend).
SWIFT_UNSET_NONE = (('swift_store_expire_soon_interval', '60'),
                    ('swift_store_retry_get_count', '0'))

RELEASES = {r.name: r for r in (
    Release('2025.1', 'keystone==27.*', 'stable/2025.1',
            keystone_sqlite_immediate=False),
    Release('2025.2', 'keystone==28.*', 'stable/2025.2',
            keystone_sqlite_immediate=False, swift_backend=SWIFT_UNSET_NONE),
    Release('2026.1', 'keystone==29.*', 'stable/2026.1',
            keystone_sqlite_immediate=False, swift_backend=SWIFT_UNSET_NONE),
    # No stable/2026.2 of openstack/requirements yet: master's constraints.
    Release('2026.2', 'keystone==30.*', 'master'),
)}
if list(RELEASES) != [r.name for r in _glance_releases().RELEASES]:
    raise ImportError('tools/lab/releases.py and glance_vsize/glance/'
                      'releases.py name different releases')
NEWEST = list(RELEASES)[-1]

#: gunicorn's --no-control-socket exists from gunicorn 27 (without it,
#: every gunicorn 27 on the machine shares ~/.gunicorn/gunicorn.ctl); the
#: constraints pin 23.0.0 (2025.1, 2025.2), 25.2.0 (2026.1) and 26.0.0
#: (2026.2), which refuse the flag with a usage error.
GUNICORN_CONTROL_SOCKET_FLAG = (27,)


def gunicorn_flags(version: str) -> tuple:
    """The lab's extra gunicorn flags for this gunicorn version."""
    major = tuple(int(p) for p in version.split('.')[:1] if p.isdigit())
    return (('--no-control-socket',)
            if major >= GUNICORN_CONTROL_SOCKET_FLAG else ())


def get(name: str) -> Release:
    try:
        return RELEASES[name]
    except KeyError:
        raise ValueError('unknown release %r (supported: %s)'
                         % (name, ', '.join(RELEASES))) from None


def main(argv: list) -> int:
    if len(argv) == 1 and argv[0] == 'list':
        print(' '.join(RELEASES))
        return 0
    if len(argv) != 2 or argv[0] != 'shell':
        print('usage: releases.py shell RELEASE | list', file=sys.stderr)
        return 2
    try:
        r = get(argv[1])
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    for key, value in (('glance', r.glance), ('keystone', r.keystone),
                       ('venv', r.venv), ('constraints', r.constraints)):
        print("%s='%s'" % (key, value))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
