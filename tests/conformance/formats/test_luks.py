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

"""LUKS: real volumes from qemu-img (and cryptsetup), hostile headers.

``luks`` is not a Glance disk format, so the engine refuses it by default;
these tests allow it with a policy to compare sizes with qemu-img.
"""

import functools
import json
import os
import random
import shutil
import struct
import subprocess

import pytest

import glance_vsize
from glance_vsize.formats import luks
from glance_vsize import inspection
from tests import helpers

pytestmark = helpers.requires_qemu_img

POLICY = inspection.Policy(
    allowed_formats=inspection.GLANCE_DISK_FORMATS | {'luks'})
GiB = 1 << 30
SECRET = ['--object', 'secret,id=sec0,data=abc']
KEY = 'key-secret=sec0,iter-time=10'

#: name -> qemu-img create -o options (qemu's PBKDF benchmark makes each
#: creation take seconds: they run in parallel, once per module).
VARIANTS = {
    'default': '',
    'aes128-cbc-essiv': 'cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,'
                        'ivgen-hash-alg=sha256,hash-alg=sha1',
}
#: The volume with data (qemu-img convert) uses these.
DATA_OPTS = ('cipher-alg=twofish-128,cipher-mode=cbc,ivgen-alg=plain,'
             'hash-alg=ripemd160')


@pytest.fixture(scope='module')
def volumes(tmp_path_factory):
    """name -> path: one small volume per variant, and one with data."""
    top = tmp_path_factory.mktemp('luks')
    raw = top / 'data.raw'
    rng = random.Random(5)
    with open(raw, 'wb') as f:
        for i in range(24):
            f.write(rng.randbytes(65536) if i % 3 else bytes(65536))
        f.write(b'tail' * 100)
    jobs, paths = [], {}
    for name, opts in VARIANTS.items():
        paths[name] = str(top / ('%s.luks' % name))
        cmd = ['qemu-img', 'create', '-q'] + SECRET + [
            '-f', 'luks', '-o', ','.join(filter(None, (KEY, opts))),
            paths[name], '1M']
        jobs.append(subprocess.Popen(cmd))
    paths['data'] = str(top / 'data.luks')
    jobs.append(subprocess.Popen(
        ['qemu-img', 'convert'] + SECRET + [
            '-O', 'luks', '-o', KEY + ',' + DATA_OPTS, str(raw),
            paths['data']]))
    for job in jobs:
        if job.wait():
            # Again, on its own: qemu's PBKDF2 benchmark can fail at random.
            proc = helpers.run_qemu_img(job.args)
            assert proc.returncode == 0, proc.stderr
    paths['data.raw'] = str(raw)
    return paths


assert_like_qemu = functools.partial(helpers.assert_like_qemu,
                                     disk_format='luks', policy=POLICY)


def assert_refused(path, check):
    helpers.assert_refused(path, 'luks', check, POLICY)


def patch(src, dst, *edits):
    """Copy ``src`` to ``dst``, write ``(offset, bytes)`` edits into it."""
    shutil.copy(src, dst)
    with open(dst, 'r+b') as f:
        for offset, value in edits:
            f.seek(offset)
            f.write(value)
    return str(dst)


def be32(value):
    return struct.pack('>I', value)


def text(value):
    return value.encode().ljust(32, b'\0')


def payload_bytes(path):
    with open(path, 'rb') as f:
        f.seek(104)
        return struct.unpack('>I', f.read(4))[0] * 512


@pytest.mark.parametrize('name', sorted(VARIANTS) + ['data'])
def test_qemu_volumes(volumes, name):
    info = assert_like_qemu(volumes[name])
    if name == 'data':
        assert info['virtual-size'] == -(
            -os.path.getsize(volumes['data.raw']) // 512) * 512


@pytest.mark.parametrize('size', (1000001, 100, 0, (1 << 20) + 512))
def test_sizes(tmp_path, volumes, size):
    # The guest sees everything after the payload offset, rounded up.
    path = patch(volumes['default'], tmp_path / 's.luks')
    os.truncate(path, payload_bytes(path) + size)
    info = assert_like_qemu(path)
    assert info['virtual-size'] == -(-size // 512) * 512


@pytest.mark.parametrize('size', (GiB + 512, 10 * GiB + 12345 * 512, 3 << 40))
def test_large_sizes(tmp_path, volumes, size):
    # Too large to stream here: the seekable mode only.
    path = patch(volumes['default'], tmp_path / 'l.luks')
    os.truncate(path, payload_bytes(path) + size)
    info = helpers.qemu_info(path, 'luks')
    result = glance_vsize.inspect_file(path, 'luks', POLICY)
    assert result.safe, result.describe()
    assert result.virtual_size == info['virtual-size'] == size


def test_default_policy_refuses(volumes):
    result = glance_vsize.inspect_file(volumes['default'])
    assert result.format == 'luks'
    assert 'unsupported_format' in result.failures


@pytest.mark.parametrize('edits', [
    [(8, text('cast5')), (108, be32(32))],
    [(8, text('serpent'))],
    [(40, text('cbc-essiv:sha256')), (108, be32(32))],
    [(40, text('cbc-essiv:md5')), (108, be32(32))],
    [(40, text('xts-plain64:sha1'))],
    [(72, text('sha1'))],
    [(72, text('ripemd160'))],
    [(168, b'\xff' * 40)],
    [(104, be32(2068480 // 512 + 8))],
])
def test_headers_qemu_opens(tmp_path, volumes, edits):
    path = patch(volumes['default'], tmp_path / 'ok.luks', *edits)
    assert_like_qemu(path)


def slot(index, field):
    """Offset of a key slot field: active 0, iterations 4, offset 40,
    stripes 44.
    """
    return luks.LUKS1_PHDR.size + index * luks.LUKS1_KEY_SLOT.size + field


@pytest.mark.parametrize('edits,check', [
    ([(6, b'\0\0')], 'version'),
    ([(6, b'\0\3')], 'version'),
    ([(8, text('sm4'))], 'cipher'),
    ([(8, text('AES'))], 'cipher'),
    ([(8, text('cast5'))], 'cipher'),
    ([(8, b'a' * 32)], 'cipher'),
    ([(40, b'x' * 32)], 'cipher'),
    ([(72, b'y' * 32)], 'cipher'),
    ([(40, text('cbc-plain'))], 'cipher'),
    ([(40, text('cbc-essiv:sha1')), (108, be32(32))], 'cipher'),
    ([(40, text('cbc-essiv')), (108, be32(32))], 'cipher'),
    ([(40, text('xts-plain64:bogus'))], 'cipher'),
    ([(40, text('xts'))], 'cipher'),
    ([(40, text('xts-plain64-x'))], 'cipher'),
    ([(40, text('xts-'))], 'cipher'),
    ([(72, text('SHA256'))], 'cipher'),
    ([(72, text('sha3-256'))], 'cipher'),
    ([(108, be32(63))], 'cipher'),
    ([(108, be32(0))], 'cipher'),
    ([(108, be32(0xffffffff))], 'key_slot'),
    ([(104, be32(0))], 'payload_offset'),
    ([(104, be32(2068480 // 512 - 1))], 'key_slot'),
    ([(104, be32(0xffffffff))], 'truncated'),
    ([(164, be32(0))], 'iterations'),
    ([(slot(0, 44), be32(0))], 'key_slot'),
    ([(slot(7, 44), be32(4001))], 'key_slot'),
    ([(slot(1, 0), be32(1))], 'key_slot'),
    ([(slot(1, 0), be32(luks.LUKS_KEY_ENABLED))], 'iterations'),
    ([(slot(0, 4), be32(0))], 'iterations'),
    ([(slot(1, 40), be32(8))], 'key_slot'),
    ([(slot(0, 40), be32(0))], 'key_slot'),
])
def test_qemu_refuses(tmp_path, volumes, edits, check):
    path = patch(volumes['default'], tmp_path / 'bad.luks', *edits)
    assert helpers.qemu_info(path, 'luks') is None
    assert_refused(path, check)


def test_payload_past_the_end(tmp_path, volumes):
    path = patch(volumes['default'], tmp_path / 'cut.luks')
    os.truncate(path, payload_bytes(path) - 512)
    assert helpers.qemu_info(path, 'luks') is None
    assert_refused(path, 'truncated')


@pytest.mark.parametrize('length', (6, 7, 300, 591))
def test_truncated_header(tmp_path, volumes, length):
    path = patch(volumes['default'], tmp_path / 'short.luks')
    os.truncate(path, length)
    assert_refused(path, 'truncated')


def make_luks2(path, length, segment_size='dynamic', hdr_size=16384):
    """A LUKS2 header by the LUKS2 spec: binary header and JSON area."""
    meta = {
        'keyslots': {}, 'tokens': {}, 'digests': {},
        'segments': {'0': {'type': 'crypt', 'offset': '16777216',
                           'size': segment_size, 'iv_tweak': '0',
                           'encryption': 'aes-xts-plain64',
                           'sector_size': 4096}},
        'config': {'json_size': str(hdr_size - 4096),
                   'keyslots_size': str(16777216 - 2 * hdr_size)},
    }
    binary = luks.LUKS2_HDR.pack(
        luks.LUKS_MAGIC, 2, hdr_size, 1, b'', b'sha256', b'\1' * 64,
        b'5c4f8300-f9f0-4713-9d60-3ca2179e0ec7', b'', 0)
    with open(path, 'wb') as f:
        f.write(binary.ljust(4096, b'\0'))
        f.write(json.dumps(meta).encode())
        f.truncate(length)
    return str(path)


@pytest.mark.parametrize('segment_size,expected', [
    ('dynamic', 16 << 20), (str(8 << 20), 8 << 20)])
def test_luks2_refused_and_sized(tmp_path, segment_size, expected):
    path = make_luks2(tmp_path / 'v2.luks', 32 << 20, segment_size)
    assert helpers.qemu_info(path, 'luks') is None
    for _mode, result in helpers.all_modes(path, 'luks', POLICY):
        assert result.format == 'luks'
        assert result.variant == 'luks2'
        assert set(result.failures) == {'unsupported_version'}
        assert result.virtual_size == expected


@pytest.mark.parametrize('meta', [b'', b'{"segments": []}', b'\xff{',
                                  b'{"segments": {"0": {"offset": "-1"}}}'])
def test_luks2_bad_metadata(tmp_path, meta):
    path = make_luks2(tmp_path / 'v2.luks', 1 << 20)
    with open(path, 'r+b') as f:
        f.seek(4096)
        f.write(meta.ljust(8192, b'\0'))
    assert_refused(path, 'unsupported_version')


@pytest.mark.skipif(shutil.which('cryptsetup') is None,
                    reason='cryptsetup is not installed')
@pytest.mark.parametrize('kind', ('luks1', 'luks2'))
def test_cryptsetup(tmp_path, kind):
    path = str(tmp_path / ('%s.img' % kind))
    with open(path, 'wb') as f:
        f.truncate(32 << 20)
    subprocess.run(['cryptsetup', 'luksFormat', '--type', kind,
                    '--batch-mode', '--pbkdf-force-iterations', '1000',
                    '--pbkdf', 'pbkdf2', '--key-file', '-', path],
                   input=b'abc', check=True, capture_output=True)
    if kind == 'luks1':
        assert_like_qemu(path)
    else:
        assert_refused(path, 'unsupported_version')
        result = glance_vsize.inspect_file(path, 'luks', POLICY)
        assert result.virtual_size == 16 << 20


@pytest.mark.parametrize('seed', range(20))
def test_garbage_after_magic(tmp_path, volumes, seed):
    rng = random.Random(seed)
    with open(volumes['default'], 'rb') as f:
        head = bytearray(f.read(592))
    if seed % 2:
        head[8:] = rng.randbytes(592 - 8)
    else:
        for _ in range(3):
            head[rng.randrange(8, 592)] = rng.randrange(256)
    path = patch(volumes['default'], tmp_path / 'junk.luks', (0, head))
    results = [r for _, r in helpers.all_modes(path, 'luks', POLICY)]
    for result in results:
        assert result.format == 'luks'
        assert result.failures.keys() == results[0].failures.keys()
        assert result.virtual_size == results[0].virtual_size
    if results[0].safe:
        info = helpers.qemu_info(path, 'luks')
        assert info is not None and \
            info['virtual-size'] == results[0].virtual_size
