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

"""Debian's Ceph packages for the lab, and the rados/rbd Python bindings
in the virtualenv.

The daemons and tools come from ``ceph-mon``, ``ceph-osd``, ``ceph-mgr``
and ``ceph-common``; they are installed with apt-get when missing (as
root, or with passwordless sudo).  glance_store's rbd driver imports
``rados`` and ``rbd``, which are not on PyPI: Debian builds them
(``python3-rados``, ``python3-rbd``) for its python3, whose ABI the
virtualenv's CPython of the same minor version shares.  Only those two
extension modules are linked into the virtualenv's site-packages, never
the rest of ``/usr/lib/python3/dist-packages``.
"""

import glob
import importlib.machinery
import os
import shutil
import sys
import sysconfig
from typing import List, Sequence

from . import debian

PACKAGES = ('ceph-mon', 'ceph-osd', 'ceph-mgr', 'ceph-common',
            'python3-rados', 'python3-rbd')
TOOLS = ('ceph-mon', 'ceph-osd', 'ceph-mgr', 'ceph-authtool', 'monmaptool',
         'ceph', 'rbd')
BINDINGS = ('rados', 'rbd')
DIST_PACKAGES = '/usr/lib/python3/dist-packages'


class Unavailable(RuntimeError):
    """Ceph is not installed and cannot be installed here."""


def _bindings_in(directory: str) -> List[str]:
    """Paths of rados and rbd extension modules this Python can load."""
    found = []
    for name in BINDINGS:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(directory, name + suffix)
            if os.path.exists(path):
                found.append(path)
                break
    return found


def missing(tools: Sequence[str] = ()) -> List[str]:
    """What is missing: tool names (``TOOLS`` and ``tools``) and binding
    module names.
    """
    gone = [t for t in TOOLS + tuple(tools) if shutil.which(t) is None]
    have = {os.path.basename(p).split('.')[0]
            for p in _bindings_in(DIST_PACKAGES)}
    return gone + [b for b in BINDINGS if b not in have]


def ensure_installed(say=print, packages: Sequence[str] = (),
                     tools: Sequence[str] = ()) -> None:
    """Install Debian's Ceph packages (and ``packages``, which bring
    ``tools``) when a tool or binding is missing; raise
    :class:`Unavailable` when that is impossible.
    """
    if not missing(tools):
        return
    packages = PACKAGES + tuple(packages)
    try:
        debian.apt_install(packages, 'Ceph (%s)' % ', '.join(missing(tools)),
                           say)
    except (debian.CannotInstall, debian.InstallFailed) as exc:
        raise Unavailable(str(exc))
    if missing(tools):
        raise Unavailable('installed %s, still missing: %s'
                          % (' '.join(packages), ', '.join(missing(tools))))


def link_bindings(site_packages: str = '') -> List[str]:
    """Symlink Debian's rados and rbd modules into ``site_packages``
    (default: this Python's purelib); return the links.  Refuses modules
    built for another Python (their file name carries the ABI tag).
    """
    site_packages = site_packages or sysconfig.get_paths()['purelib']
    sources = _bindings_in(DIST_PACKAGES)
    if len(sources) != len(BINDINGS):
        built = sorted(os.path.basename(p) for p in glob.glob(
            os.path.join(DIST_PACKAGES, 'r[ab][db]*.so')))
        raise Unavailable(
            'no rados/rbd modules for Python %d.%d in %s (Debian\'s: %s); '
            'the virtualenv needs the python3 Debian builds them for'
            % (sys.version_info[0], sys.version_info[1], DIST_PACKAGES,
               ', '.join(built) or 'none'))
    links = []
    for src in sources:
        link = os.path.join(site_packages, os.path.basename(src))
        if os.path.realpath(link) != os.path.realpath(src):
            # Atomic: labs started together may link at the same time.
            tmp = '%s.%d.tmp' % (link, os.getpid())
            os.symlink(src, tmp)
            os.replace(tmp, link)
        links.append(link)
    return links
