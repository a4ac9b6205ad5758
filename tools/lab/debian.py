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

"""Installing Debian packages for the lab (Ceph, PostgreSQL): apt-get, as
root or by passwordless sudo.
"""

import os
import shutil
import subprocess
from typing import Callable, List, Optional, Sequence


class CannotInstall(Exception):
    """This user cannot run apt-get here (the message says why)."""


class InstallFailed(RuntimeError):
    """apt-get ran and failed (the message has its output)."""


def privileged_prefix() -> Optional[List[str]]:
    """What runs a command as root: nothing for root, ``sudo -n`` with
    passwordless sudo; None when neither.
    """
    if os.geteuid() == 0:
        return []
    if shutil.which('sudo') and subprocess.run(
            ['sudo', '-n', 'true'], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode == 0:
        return ['sudo', '-n']
    return None


def apt_install(packages: Sequence[str], what: str,
                say: Callable[[str], None] = print,
                timeout: int = 1800) -> None:
    """``apt-get update`` and ``apt-get install`` ``packages`` (without
    recommends).  ``what`` names what is missing, for the errors.

    :raises: :class:`CannotInstall`, :class:`InstallFailed`
    """
    prefix = privileged_prefix()
    if prefix is None:
        raise CannotInstall(
            '%s is not installed and this user can neither install it (not '
            'root, no passwordless sudo): apt-get install %s'
            % (what, ' '.join(packages)))
    if shutil.which('apt-get') is None:
        raise CannotInstall('%s is not installed and there is no apt-get'
                            % what)
    say('installing %s (Debian packages)' % ' '.join(packages))
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    for cmd in (['apt-get', 'update', '-qq'],
                ['apt-get', 'install', '-y', '-qq',
                 '--no-install-recommends'] + list(packages)):
        proc = subprocess.run(prefix + cmd, env=env, capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode:
            raise InstallFailed('%s failed:\n%s%s' % (
                ' '.join(cmd), proc.stdout[-3000:], proc.stderr[-3000:]))
