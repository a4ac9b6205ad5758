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

"""Glance's config dir for the lab (``DIR/etc``, OS_GLANCE_CONFIG_DIR):
the files the glance wheel ships, with the project's own edits
(``etc/*.patch``, applied with ``patch`` as a deployer would), then the
lab's settings set in place (:mod:`ini`).  Rewritten on every start."""

from importlib import metadata
import os
import shutil
import subprocess

from . import REPO
from .ini import iniset
from .ini import iniset_many

#: The wheel's files the project patches (glance_vsize needs no edit of
#: glance-api.conf: Glance's own defaults).
PATCHED = ('glance-api-paste.ini',)
COPIED = ('glance-api-paste.ini', 'glance-api.conf')


def wheel_etc() -> str:
    """The directory holding the wheel's etc/glance files."""
    for f in metadata.distribution('glance').files or ():
        if str(f).endswith('etc/glance/glance-api.conf'):
            return os.path.dirname(str(f.locate()))
    raise RuntimeError('the glance wheel ships no etc/glance/glance-api.conf')


def apply_patch(etc: str, name: str) -> None:
    patch = os.path.join(REPO, 'etc', name + '.patch')
    with open(patch, 'rb') as f:
        proc = subprocess.run(['patch', '-p1', '--forward', '--batch',
                               '--no-backup-if-mismatch', '-d', etc],
                              stdin=f, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError('%s does not apply to the wheel\'s %s:\n%s%s'
                           % (patch, name, proc.stdout, proc.stderr))


def build(etc: str, data: str, *, vsize: bool, database: str,
          import_plugins: list, debug: bool, auth: dict) -> None:
    """Write DIR/etc.  ``auth``: keystone_authtoken settings."""
    os.makedirs(etc, exist_ok=True)
    src = wheel_etc()
    for name in COPIED:
        shutil.copyfile(os.path.join(src, name), os.path.join(etc, name))
        if vsize and name in PATCHED:
            apply_patch(etc, name)
    conf = os.path.join(etc, 'glance-api.conf')
    d = lambda name: os.path.join(data, name)   # noqa: E731
    iniset_many(conf, {
        'DEFAULT': {
            'debug': debug,
            'log_file': d('log/glance-api.log'),
            # web: the read-only http store, for images added by
            # location (http URLs).
            'enabled_backends': 'local:file, second:file, web:http',
            'enabled_import_methods': '[glance-direct,web-download,'
                                      'copy-image]',
            # Unified limits are a deployment choice; not the lab's.
            'use_keystone_limits': False,
        },
        'database': {'connection': database},
        'glance_store': {'default_backend': 'local'},
        'local': {'filesystem_store_datadir': d('images')},
        'second': {'filesystem_store_datadir': d('images-second')},
        'os_glance_staging_store': {'filesystem_store_datadir': d('staging')},
        'os_glance_tasks_store': {'filesystem_store_datadir': d('tasks')},
        'paste_deploy': {'flavor': 'keystone'},
        'keystone_authtoken': auth,
        # web-download from a local http.server: loopback, any port.
        'import_filtering_opts': {'allowed_hosts': '[127.0.0.1,localhost]',
                                  'allowed_ports': '[]'},
        'oslo_concurrency': {'lock_path': d('locks')},
        # The notifications Glance sends, into glance-api.log: the tests
        # read what consumers of image.update get.  glance_vsize depends
        # on no notification setting.
        'oslo_messaging_notifications': {'driver': 'log'},
    })
    imp = os.path.join(etc, 'glance-image-import.conf')
    shutil.copyfile(os.path.join(REPO, 'etc',
                                 'glance-image-import.conf.sample'), imp)
    plugins = [p for p in import_plugins if vsize or p != 'glance_vsize']
    iniset(imp, 'image_import_opts', 'image_import_plugins',
           '[%s]' % ','.join(plugins))
