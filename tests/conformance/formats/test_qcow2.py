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

"""qcow2: real images from qemu-img, and hostile ones made from them."""

import functools
import random
import struct

import pytest

from glance_vsize.formats import qcow2
from tests import helpers

pytestmark = helpers.requires_qemu_img

G = 1 << 30
SIZES = ('1M', str(G + 512), str(10 * G + 12345 * 512), '3T')
SECRET = ('--object', 'secret,id=sec0,data=123456')

#: qemu-img create -o options; each is tried with every size above.
OPTIONS = (
    'compat=0.10,cluster_size=512',
    'compat=0.10,cluster_size=64k',
    'compat=0.10,cluster_size=2M',
    'compat=1.1,cluster_size=512',
    'compat=1.1,cluster_size=64k',
    'compat=1.1,cluster_size=2M',
    'extended_l2=on,cluster_size=128k',
    'lazy_refcounts=on,refcount_bits=64',
    'refcount_bits=1',
    'compression_type=zstd',
)


def _create(path, size, opts='', *extra):
    cmd = ['qemu-img', 'create', '-q', '-f', 'qcow2']
    cmd += list(extra)
    if opts:
        cmd += ['-o', opts]
    return helpers.run_qemu_img(cmd + [str(path), str(size)]).returncode == 0


_mutate = helpers.mutated_copy


_check_hostile = functools.partial(helpers.assert_hostile,
                                   disk_format='qcow2')


@pytest.fixture(scope='module')
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp('qcow2')


@pytest.fixture(scope='module')
def base_images(tmp):
    """A few images the hostile tests mutate."""
    images = {
        'v3': tmp / 'v3.qcow2', 'v2': tmp / 'v2.qcow2',
        'c2m': tmp / 'c2m.qcow2', 'luks': tmp / 'luks.qcow2'}
    assert _create(images['v3'], G)
    assert _create(images['v2'], G, 'compat=0.10')
    assert _create(images['c2m'], G, 'cluster_size=2M')
    assert _create(images['luks'], G, 'encrypt.format=luks,'
                   'encrypt.key-secret=sec0,encrypt.iter-time=10', *SECRET)
    return {name: str(path) for name, path in images.items()}


@pytest.mark.parametrize('opts', OPTIONS)
def test_created_images(tmp, opts):
    for size in SIZES:
        path = tmp / ('created-%s-%s.qcow2' % (opts.replace(',', '_'), size))
        if not _create(path, size, opts):
            # 3T does not fit the L1 table of 512-byte clusters.
            assert 'cluster_size=512' in opts and size == '3T'
            continue
        helpers.assert_like_qemu(path, 'qcow2')


def test_odd_size_rounds_down(tmp, base_images):
    """qemu keeps the size in sectors: 1G - 100 reads as 1G - 512."""
    path = _mutate(base_images['v3'], tmp / 'odd.qcow2',
                   [(24, '>Q', G - 100)])
    assert helpers.assert_like_qemu(path, 'qcow2')['virtual-size'] == G - 512


def test_data_from_convert(tmp):
    raw = tmp / 'random.raw'
    raw.write_bytes(random.Random(7).randbytes(1000000))
    for name, opts in (('plain', ['-o', 'cluster_size=4k']),
                       ('zlib', ['-c']),
                       ('zstd', ['-c', '-o', 'compression_type=zstd']),
                       ('compat', ['-c', '-o', 'compat=0.10'])):
        path = tmp / ('data-%s.qcow2' % name)
        helpers.qemu_img('convert', '-O', 'qcow2', *opts, str(raw), str(path))
        info = helpers.assert_like_qemu(path, 'qcow2')
        assert info['virtual-size'] == 1000448     # rounded up by convert


def test_metadata_preallocation(tmp):
    path = tmp / 'prealloc.qcow2'
    assert _create(path, '1M', 'preallocation=metadata')
    helpers.assert_like_qemu(path, 'qcow2')


def test_snapshot_and_bitmap(tmp):
    path = tmp / 'snap.qcow2'
    assert _create(path, G)
    helpers.qemu_img('snapshot', '-c', 'first', str(path))
    helpers.qemu_img('bitmap', '--add', str(path), 'bitmap0')
    helpers.assert_like_qemu(path, 'qcow2')


def test_luks_encrypted(base_images):
    helpers.assert_like_qemu(base_images['luks'], 'qcow2')
    result = _check_hostile(base_images['luks'])
    assert result.details['encryption'] == 'luks'


def test_aes_encrypted_refused(tmp):
    path = tmp / 'aes.qcow2'
    assert _create(path, G, 'encrypt.format=aes,encrypt.key-secret=sec0',
                   *SECRET)
    helpers.assert_refused(path, 'qcow2', 'encryption')


def test_backing_file_refused(tmp, base_images):
    path = tmp / 'child.qcow2'
    assert _create(path, G, '', '-b', base_images['v3'], '-F', 'qcow2')
    helpers.assert_refused(path, 'qcow2', 'backing_file')
    reason = _check_hostile(path).failures['backing_file']
    assert base_images['v3'] in reason


@pytest.mark.parametrize('opts', ('data_file={}', 'data_file={},'
                                  'data_file_raw=on'))
def test_data_file_refused(tmp, opts):
    path = tmp / 'df.qcow2'
    data = str(tmp / 'external.raw')
    assert _create(path, '1M', opts.format(data))
    helpers.assert_refused(path, 'qcow2', 'data_file')
    assert data in _check_hostile(path).failures['data_file']


# (base image, edits, the check that must fail or None when qemu opens it)
HOSTILE = {
    'version1': ('v3', [(4, '>I', 1)], 'version'),
    'version4': ('v3', [(4, '>I', 4)], 'version'),
    'cluster_bits8': ('v3', [(20, '>I', 8)], 'cluster_size'),
    'cluster_bits22': ('v3', [(20, '>I', 22)], 'cluster_size'),
    'cluster_bits_huge': ('v3', [(20, '>I', 0xffffffff)], 'cluster_size'),
    'header_length100': ('v3', [(100, '>I', 100)], 'header_length'),
    'header_length108': ('v3', [(100, '>I', 108)], 'header_length'),
    'header_length_huge': ('v3', [(100, '>I', 65544)], 'header_length'),
    'header_length104': ('v3', [(100, '>I', 104)], None),
    'header_length_cluster': ('v3', [(100, '>I', 65536)], None),
    'dirty': ('v3', [(72, '>Q', 1)], None),
    'corrupt': ('v3', [(72, '>Q', 2)], None),
    'data_file_bit': ('v3', [(72, '>Q', 4)], 'data_file'),
    'compression_bit_zlib': ('v3', [(72, '>Q', 8)], 'compression_type'),
    'zstd_without_bit': ('v3', [(104, 'B', 1)], 'compression_type'),
    'zstd_with_bit': ('v3', [(104, 'B', 1), (72, '>Q', 8)], None),
    'compression_type2': ('v3', [(104, 'B', 2), (72, '>Q', 8)],
                          'compression_type'),
    'extl2_small_l1': ('v3', [(72, '>Q', 16)], 'table_bounds'),
    'extl2_8k_clusters': ('v3', [(72, '>Q', 16), (20, '>I', 13)],
                          'cluster_size'),
    'unknown_incompatible': ('v3', [(72, '>Q', 1 << 5)], 'unknown_features'),
    'all_incompatible': ('v3', [(72, '>Q', (1 << 64) - 1)],
                         'unknown_features'),
    'unknown_compatible': ('v3', [(80, '>Q', (1 << 64) - 1)], None),
    'unknown_autoclear': ('v3', [(88, '>Q', (1 << 64) - 2)], None),
    'v2_garbage_v3_fields': ('v2', [(72, '>Q', 0xffff)], 'header_extension'),
    'refcount_order7': ('v3', [(96, '>I', 7)], 'refcount_order'),
    'refcount_order0': ('v3', [(96, '>I', 0)], None),
    'crypt_aes': ('v3', [(32, '>I', 1)], 'encryption'),
    'crypt_luks_no_header': ('v3', [(32, '>I', 2)], 'encryption'),
    'crypt_method3': ('v3', [(32, '>I', 3)], 'encryption'),
    'size_zero': ('v3', [(24, '>Q', 0)], None),
    'size_odd_too_big': ('v3', [(24, '>Q', G + 100)], 'table_bounds'),
    'size_2_62': ('v3', [(24, '>Q', 1 << 62)], 'image_size'),
    'size_negative': ('v3', [(24, '>Q', (1 << 64) - 512)], 'image_size'),
    'l1_too_small': ('v3', [(36, '>I', 1)], 'table_bounds'),
    'l1_size_limit': ('v3', [(36, '>I', 4 << 20)], None),
    'l1_too_large': ('v3', [(36, '>I', (4 << 20) + 1)], 'table_bounds'),
    'l1_unaligned': ('v3', [(40, '>Q', 0x30008)], 'table_bounds'),
    'l1_beyond_eof': ('v3', [(40, '>Q', 1 << 40)], None),
    'l1_at_max_length': ('v3', [(40, '>Q', qcow2.ext.BDRV_MAX_LENGTH)],
                         'table_bounds'),
    'refcount_clusters0': ('v3', [(56, '>I', 0)], 'table_bounds'),
    'refcount_too_large': ('v3', [(56, '>I', 129)], 'table_bounds'),
    'refcount_unaligned': ('v3', [(48, '>Q', 0x10008)], 'table_bounds'),
    'refcount_overflow': ('v3', [(48, '>Q', (1 << 64) - 65536)],
                          'table_bounds'),
    'snapshots_unaligned': ('v3', [(64, '>Q', 12345)], 'table_bounds'),
    'snapshots_too_many': ('v3', [(60, '>I', 65537), (64, '>Q', 0x40000)],
                           'table_bounds'),
    'snapshots_at_max_length': (
        'v3', [(60, '>I', 1), (64, '>Q', qcow2.ext.BDRV_MAX_LENGTH)],
        'table_bounds'),
    'snapshot_beyond_eof': ('v3', [(60, '>I', 1), (64, '>Q', 1 << 40)], None),
    'backing_offset_beyond_cluster': ('v3', [(8, '>Q', 65537),
                                             (16, '>I', 5)], 'backing_file'),
    'backing_name_too_long': ('v3', [(8, '>Q', 1024), (16, '>I', 1024)],
                              'backing_file'),
    'backing_name_empty': ('v3', [(8, '>Q', 1024), (16, '>I', 0)],
                           'backing_file'),
    'backing_name_in_header': ('v3', [(8, '>Q', 8), (16, '>I', 4)],
                               'backing_file'),
    'extension_too_long': ('v3', [(112, '>I', 0x12345678),
                                  (116, '>I', 65536 - 119)],
                           'header_extension'),
    'extension_to_cluster_end': ('v3', [(112, '>I', 0x12345678),
                                        (116, '>I', 65536 - 120)], None),
    'end_marker_huge_length': ('v3', [(112, '>I', 0),
                                      (116, '>I', 0xfffffff0)],
                               'header_extension'),
    'backing_format_too_long': ('v3', [(112, '>I', 0xe2792aca),
                                       (116, '>I', 16)], 'header_extension'),
    'backing_format_only': ('v3', [(112, '>I', 0xe2792aca),
                                   (116, '>I', 15)], None),
    'bitmaps_bad_length': ('v3', [(112, '>I', 0x23852875), (116, '>I', 16)],
                           'header_extension'),
    'bitmaps_ignored': ('v3', [(112, '>I', 0x23852875), (116, '>I', 24)],
                        None),
    'bitmaps_zero': ('v3', [(88, '>Q', 1), (112, '>I', 0x23852875),
                            (116, '>I', 24), (120, None, bytes(24))],
                     'header_extension'),
    'crypto_pointer_without_luks': ('v3', [(112, '>I', 0x0537be77),
                                           (116, '>I', 16)],
                                    'header_extension'),
    'data_file_name_without_bit': ('v3', [(112, '>I', 0x44415441),
                                          (116, '>I', 8),
                                          (120, None, b'evil.raw')],
                                   'data_file'),
    'luks_pointer_unaligned': ('luks', [(120, '>Q', 0x40200)],
                               'header_extension'),
    'luks_pointer_elsewhere': ('luks', [(120, '>Q', 0x10000)],
                               'encryption'),
    'luks_header_short': ('luks', [(128, '>Q', 100)], 'encryption'),
    'luks_pointer_removed': ('luks', [(112, '>I', 0x1234)], 'encryption'),
    'luks_magic': ('luks', [(0x40000, None, b'LUKS\xba\xbf')], 'encryption'),
    'luks_without_method': ('luks', [(32, '>I', 0)], 'header_extension'),
}


@pytest.mark.parametrize('name', sorted(HOSTILE))
def test_hostile(tmp, base_images, name):
    image, edits, check = HOSTILE[name]
    path = _mutate(base_images[image], tmp / ('hostile-%s' % name), edits)
    result = _check_hostile(path, check)
    if check is None:
        assert result.safe, result.describe()


@pytest.mark.parametrize('length', (4, 8, 71, 72, 103, 104, 112, 500, 4096,
                                    65536))
def test_truncated(tmp, base_images, length):
    """Past its end qemu reads zeros: a whole header opens."""
    path = _mutate(base_images['v3'], tmp / ('truncated-%d' % length), [],
                   length)
    result = _check_hostile(path, 'truncated' if length < 104 else None)
    assert result.safe == (length >= 104)


@pytest.mark.parametrize('seed', range(8))
def test_garbage(tmp, seed):
    rand = random.Random(seed)
    version = b'' if seed % 2 else struct.pack('>I', 2 + seed % 4 // 2)
    data = qcow2.MAGIC + version + rand.randbytes(8188)
    path = tmp / ('garbage-%d' % seed)
    path.write_bytes(data)
    result = _check_hostile(path)
    assert result.format == 'qcow2' and not result.safe


def test_extensions_beyond_first_window(tmp, base_images):
    """A data file name 100 kB into a 2 MiB header cluster is found in
    every streaming chunk size, after an unknown extension skipped.
    """
    edits = [(112, '>I', 0x12345678), (116, '>I', 100000),
             (100120, '>I', 0x44415441), (100124, '>I', 8),
             (100128, None, b'evil.raw'), (100136, '>Q', 0)]
    path = _mutate(base_images['c2m'], tmp / 'far-ext.qcow2', edits)
    assert 'evil.raw' in _check_hostile(path).failures['data_file']
    path = _mutate(path, tmp / 'far-ext-bit.qcow2', [(72, '>Q', 4)])
    assert 'evil.raw' in _check_hostile(path).failures['data_file']


def test_many_extensions(tmp, base_images):
    """Twenty thousand empty unknown extensions: qemu opens the image."""
    edits = [(112, None, struct.pack('>II', 0x11111111, 0) * 20000),
             (112 + 8 * 20000, '>Q', 0)]
    path = _mutate(base_images['c2m'], tmp / 'many-ext.qcow2', edits)
    assert _check_hostile(path).safe


def test_backing_name_far_in_cluster(tmp, base_images):
    edits = [(8, '>Q', 1500000), (16, '>I', 8), (1500000, None, b'base.img')]
    path = _mutate(base_images['c2m'], tmp / 'far-backing.qcow2', edits)
    assert "'base.img'" in _check_hostile(path).failures['backing_file']


def test_bad_extension_still_reports_backing_and_data_file(tmp, base_images):
    edits = [(72, '>Q', 4), (8, '>Q', 4096), (16, '>I', 8),
             (4096, None, b'base.img'), (112, '>I', 0x12345678),
             (116, '>I', 5000)]
    path = _mutate(base_images['v3'], tmp / 'bad-ext.qcow2', edits)
    failures = _check_hostile(path, 'header_extension').failures
    assert 'data_file' in failures and "'base.img'" in failures['backing_file']
