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

"""The generated corpus the hardening tests start from.

``tests/imagegen.py``'s images (qemu-img is the oracle of their sizes),
plus a LUKS volume and a LUKS-encrypted qcow2, which need a secret to
create.  Built once per session; about 4 seconds.
"""

import os
import shutil
import subprocess

import pytest

from tests import imagegen


def _secret_create(path, fmt, opts):
    """qemu-img create with a secret.  Its PBKDF benchmark fails now and
    then on a loaded machine ("Unable to get accurate CPU usage"): retry.
    """
    for attempt in range(8):
        proc = subprocess.run(
            ['qemu-img', 'create', '-q', '-f', fmt, '--object',
             'secret,id=sec0,data=hardening', '-o', opts, path, '1M'],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if not proc.returncode:
            return
    raise AssertionError('qemu-img create -f %s failed: %s'
                         % (fmt, proc.stderr))


@pytest.fixture(scope='session')
def corpus(tmp_path_factory):
    """``(outdir, entries)``: every generated image, with the manifest's
    ``file``, ``disk_format``, ``virtual_size``, ``safe`` and ``why``.
    """
    if shutil.which('qemu-img') is None or shutil.which('xorriso') is None:
        pytest.skip('qemu-img and xorriso (Debian qemu-utils, xorriso) are '
                    'needed to build the corpus')
    outdir = str(tmp_path_factory.mktemp('hardening-corpus'))
    entries = imagegen.build(outdir)
    gen = imagegen.Generator(outdir)
    _secret_create(gen.path('luks.luks'), 'luks',
                   'key-secret=sec0,iter-time=100')
    gen.record('luks.luks', 'luks', safe=False,
               why='LUKS is not a Glance disk format')
    _secret_create(gen.path('qcow2-luks.qcow2'), 'qcow2',
                   'encrypt.format=luks,encrypt.key-secret=sec0,'
                   'encrypt.iter-time=100')
    gen.record('qcow2-luks.qcow2', 'qcow2')
    entries = entries + gen.entries
    for entry in entries:
        entry['path'] = os.path.join(outdir, entry['file'])
        entry['size'] = os.path.getsize(entry['path'])
    return outdir, entries
