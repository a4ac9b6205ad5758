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

"""Encrypted volumes declared raw, as Cinder uploads them.

Cinder's "upload volume to image" of an encrypted volume sends the LUKS
bytes with ``disk_format`` raw (bare, or gzip in a ``compressed``
container).  They are accepted as raw and sized as ``qemu-img info -f raw``
sizes them, with a warning naming the LUKS header; nothing else declared
raw is loosened.  Volumes are made by qemu-img (LUKS1) and cryptsetup
(LUKS1 and LUKS2, on plain files).
"""

import os
import random
import re
import shutil
import subprocess
import sys

import pytest

import glance_vsize
from glance_vsize import inspection
from tests import containergen
from tests import helpers

pytestmark = helpers.requires_qemu_img

requires_cryptsetup = pytest.mark.skipif(
    shutil.which('cryptsetup') is None and not os.environ.get('CI'),
    reason='cryptsetup (Debian cryptsetup-bin) is not installed')

SECRET = ['--object', 'secret,id=sec0,data=abc']
KEY = 'key-secret=sec0,iter-time=10'
MiB = 1 << 20


def _qemu_luks(path, size, opts=''):
    cmd = ['qemu-img', 'create', '-q'] + SECRET + [
        '-f', 'luks', '-o', ','.join(filter(None, (KEY, opts))), str(path),
        str(size)]
    proc = helpers.run_qemu_img(cmd)
    assert proc.returncode == 0, proc.stderr
    return str(path)


def _cryptsetup(path, kind, size):
    with open(path, 'wb') as f:
        f.truncate(size)
    subprocess.run(['cryptsetup', 'luksFormat', '--type', kind,
                    '--batch-mode', '--pbkdf-force-iterations', '1000',
                    '--pbkdf', 'pbkdf2', '--key-file', '-', str(path)],
                   input=b'abc', check=True, capture_output=True)
    return str(path)


def payload_offset(path):
    """Where the encrypted payload starts, in bytes, by ``cryptsetup
    luksDump`` when it is installed, else by the LUKS1 header.
    """
    if shutil.which('cryptsetup'):
        dump = subprocess.run(['cryptsetup', 'luksDump', path], check=True,
                              capture_output=True, text=True).stdout
        found = re.search(r'^Payload offset:\s*(\d+)', dump, re.M)
        if found:
            return int(found.group(1)) * 512
        return int(re.search(r'^\s*offset:\s*(\d+) \[bytes\]', dump,
                             re.M).group(1))
    with open(path, 'rb') as f:
        f.seek(104)
        return int.from_bytes(f.read(4), 'big') * 512


@pytest.fixture(scope='module')
def volumes(tmp_path_factory):
    """name -> path of a LUKS volume."""
    top = tmp_path_factory.mktemp('luks-raw')
    made = {'qemu-luks1': _qemu_luks(top / 'qemu.img', 3 * MiB)}
    # A payload that is not a whole number of sectors: raw rounds it up.
    made['qemu-odd-luks1'] = _qemu_luks(top / 'odd.img', MiB)
    os.truncate(made['qemu-odd-luks1'], os.path.getsize(
        made['qemu-odd-luks1']) + 1001)
    if shutil.which('cryptsetup'):
        made['cryptsetup-luks1'] = _cryptsetup(top / 'c1.img', 'luks1',
                                               4 * MiB)
        made['cryptsetup-luks2'] = _cryptsetup(top / 'c2.img', 'luks2',
                                               20 * MiB)
    return made


def _volume(volumes, name):
    if name not in volumes:
        if os.environ.get('CI'):
            pytest.fail('cryptsetup is not installed')
        pytest.skip('cryptsetup (Debian cryptsetup-bin) is not installed')
    return volumes[name]


#: name (ending in the LUKS version) -> how it is made.
VOLUMES = ['qemu-luks1', 'qemu-odd-luks1',
           pytest.param('cryptsetup-luks1', marks=requires_cryptsetup),
           pytest.param('cryptsetup-luks2', marks=requires_cryptsetup)]


def assert_raw_luks(result, path, version, where):
    """``result`` is the raw verdict qemu's raw driver agrees with, and
    warns of the LUKS header.
    """
    info = helpers.qemu_info(path, 'raw')
    assert result.failures == {}, '%s: %s' % (where, result.describe())
    assert result.safe, where
    assert result.format == 'raw', where
    assert result.virtual_size == info['virtual-size'], where
    assert result.variant == 'luks%d' % version, where
    warning = result.warnings['luks']
    assert ('LUKS version %d header at offset 0 (payload at offset %d'
            % (version, payload_offset(path))) in warning, warning
    assert 'declared raw' in warning
    assert result.details['payload_offset'] == payload_offset(path)


@pytest.mark.parametrize('name', VOLUMES)
def test_declared_raw_is_raw_in_every_mode(volumes, name):
    path = _volume(volumes, name)
    for mode, result in helpers.all_modes(path, 'raw'):
        assert_raw_luks(result, path, int(name[-1]),
                        '%s [%s]' % (name, mode))
    if name == 'qemu-odd-luks1':
        assert os.path.getsize(path) % 512
        assert helpers.qemu_info(path, 'raw')['virtual-size'] % 512 == 0


@pytest.mark.parametrize('name', VOLUMES)
def test_declared_raw_in_a_gzip_compressed_container(volumes, name, tmp_path):
    # Cinder compresses with "gzip -k".
    path = _volume(volumes, name)
    src = tmp_path / os.path.basename(path)
    shutil.copy(path, src)
    subprocess.run(['gzip', '-k', str(src)], check=True)
    for mode, result in helpers.all_modes(str(src) + '.gz', 'raw',
                                          container_format='compressed'):
        assert_raw_luks(result, path, int(name[-1]),
                        '%s [%s]' % (name, mode))
        assert result.details['compression'] == 'gzip'


def test_declared_raw_of_a_large_volume(volumes, tmp_path):
    # A volume of several GiB, sparse: the seekable mode only.
    path = tmp_path / 'big.img'
    shutil.copy(volumes['qemu-luks1'], path)
    os.truncate(path, (5 << 30) + 4096)
    result = glance_vsize.inspect_file(str(path), 'raw')
    assert result.safe, result.describe()
    assert result.virtual_size == helpers.qemu_info(path, 'raw')[
        'virtual-size']


@pytest.mark.parametrize('declared', [None, 'luks', 'qcow2', 'ami'])
def test_not_declared_raw_keeps_todays_verdict(volumes, declared):
    path = volumes['qemu-luks1']
    for mode, result in helpers.all_modes(path, declared):
        where = '%s: %s' % (mode, result.describe())
        assert not result.safe, where
        assert result.format == 'luks', where
        assert 'unsupported_format' in result.failures, where
        assert 'luks' not in result.warnings, where
        if declared not in (None, 'luks'):
            assert 'format_mismatch' in result.failures, where


def test_declared_luks_with_luks_allowed_is_sized_by_the_luks_driver(
        volumes):
    policy = inspection.Policy(
        allowed_formats=inspection.GLANCE_DISK_FORMATS | {'luks'})
    path = volumes['qemu-luks1']
    info = helpers.qemu_info(path, 'luks')
    for _mode, result in helpers.all_modes(path, 'luks', policy):
        assert result.safe, result.describe()
        assert (result.format, result.virtual_size) == (
            'luks', info['virtual-size'])
        assert result.virtual_size < os.path.getsize(path)


def test_other_formats_declared_raw_are_still_refused(tmp_path):
    for fmt in ('qcow2', 'vdi', 'vhdx', 'vmdk'):
        path = helpers.create(tmp_path / ('x.' + fmt), fmt, MiB)
        helpers.assert_refused(path, 'raw', 'format_mismatch')


def test_a_backing_file_declared_raw_is_refused(tmp_path):
    helpers.create(tmp_path / 'base.qcow2', 'qcow2', MiB)
    path = helpers.create(tmp_path / 'top.qcow2', 'qcow2', MiB,
                          'backing_file=base.qcow2,backing_fmt=qcow2')
    helpers.assert_refused(path, 'raw', 'backing_file')
    gz = containergen.compress(path, 'gzip')
    for mode, result in helpers.all_modes(gz, 'raw',
                                          container_format='compressed'):
        assert 'backing_file' in result.failures, mode


def test_luks_with_another_format_beside_it_is_refused(volumes, tmp_path):
    # A fixed VHD footer at the end of a LUKS volume: two formats at once.
    vhd = helpers.create(tmp_path / 'f.vhd', 'vhd', MiB, 'subformat=fixed')
    with open(vhd, 'rb') as f:
        f.seek(-512, os.SEEK_END)
        footer = f.read()
    path = tmp_path / 'both.img'
    shutil.copy(volumes['qemu-luks1'], path)
    with open(path, 'ab') as f:
        f.write(footer)
    helpers.assert_refused(str(path), 'raw', 'multiple_formats')


def test_luks_with_an_iso_volume_inside_is_refused(volumes, tmp_path):
    path = tmp_path / 'iso.img'
    shutil.copy(volumes['qemu-luks1'], path)
    with open(path, 'r+b') as f:
        f.seek(32768)
        f.write(b'\x01CD001\x01\x00')
    helpers.assert_refused(str(path), 'raw', 'multiple_formats')


def test_a_header_qemu_luks_refuses_is_still_raw(volumes, tmp_path):
    # qemu's raw driver reads any bytes: a LUKS header that its luks
    # driver refuses (an unknown cipher) is raw too, and the warning says.
    path = tmp_path / 'sm4.img'
    shutil.copy(volumes['qemu-luks1'], path)
    with open(path, 'r+b') as f:
        f.seek(8)
        f.write(b'sm4'.ljust(32, b'\0'))
    assert helpers.qemu_info(path, 'luks') is None
    for mode, result in helpers.all_modes(path, 'raw'):
        assert result.safe, mode
        assert result.virtual_size == helpers.qemu_info(path, 'raw')[
            'virtual-size']
        assert "qemu's luks driver would not open it (cipher)" in \
            result.warnings['luks']


def test_cli_accepts_with_the_warning(volumes):
    proc = subprocess.run(
        [sys.executable, '-m', 'glance_vsize.cmd.cli', 'inspect',
         '--disk-format', 'raw', volumes['qemu-luks1']],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    size = helpers.qemu_info(volumes['qemu-luks1'], 'raw')['virtual-size']
    assert 'format:       raw (luks1)\n' in proc.stdout
    assert 'virtual size: %d\n' % size in proc.stdout
    assert 'warning:      luks: LUKS version 1 header at offset 0' in \
        proc.stdout
    proc = subprocess.run(
        [sys.executable, '-m', 'glance_vsize.cmd.cli', 'inspect',
         volumes['qemu-luks1']], capture_output=True, text=True)
    assert proc.returncode == 3
    assert 'unsupported_format' in proc.stdout


@pytest.mark.parametrize('seed', range(12))
def test_mangled_headers_declared_raw_agree_with_qemu_raw(
        volumes, tmp_path, seed):
    # Whatever follows the magic, every mode reaches one verdict, and a
    # safe one is what qemu's raw driver says.
    rng = random.Random(seed)
    path = tmp_path / 'junk.img'
    shutil.copy(volumes['qemu-luks1'], path)
    with open(path, 'r+b') as f:
        for _ in range(1 + seed % 4):
            f.seek(rng.randrange(6, 4096))
            f.write(rng.randbytes(rng.randrange(1, 64)))
    if seed % 3 == 0:
        os.truncate(path, rng.randrange(8, 4096))
    result = helpers.assert_hostile(str(path), disk_format='raw')
    assert result.safe, result.describe()
    assert result.format == 'raw' and 'luks' in result.warnings
