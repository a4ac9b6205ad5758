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

"""QED: real images from qemu-img, and hostile ones made from them.

QED is no Glance disk format, so these tests inspect with a policy that
allows it; the default policy refuses it (``unsupported_format``).
"""

import functools
import random
import subprocess

import pytest

import glance_vsize
from glance_vsize.formats import qed
from tests import helpers

pytestmark = helpers.requires_qemu_img

G = 1 << 30
QED_ONLY = glance_vsize.Policy(allowed_formats=frozenset({'qed'}))
SIZES = (1 << 20, G + 512, 10 * G + 12345 * 512, 3 << 40)
#: (cluster_size, table_size) for qemu-img create -o.  qemu's limit on
#: the image size wraps around to 0 for the last two: qemu-img refuses them.
GEOMETRIES = ((4096, 16), (65536, 4), (65536, 16), (1 << 20, 2),
              (2 << 20, 2), (16 << 20, 2), (64 << 20, 16))


def _create(path, size, opts=''):
    cmd = ['qemu-img', 'create', '-q', '-f', 'qed']
    if opts:
        cmd += ['-o', opts]
    proc = subprocess.run(cmd + [str(path), str(size)], capture_output=True)
    return proc.returncode == 0


_mutate = helpers.mutated_copy


assert_like_qemu = functools.partial(helpers.assert_like_qemu,
                                     disk_format='qed', policy=QED_ONLY)


_check_hostile = functools.partial(helpers.assert_hostile,
                                   disk_format='qed', policy=QED_ONLY)


@pytest.fixture(scope='module')
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp('qed')


@pytest.fixture(scope='module')
def plain(tmp):
    path = tmp / 'plain.qed'
    assert _create(path, G)
    return str(path)


@pytest.mark.parametrize('cluster_size,table_size', GEOMETRIES)
def test_created_images(tmp, cluster_size, table_size):
    opts = 'cluster_size=%d,table_size=%d' % (cluster_size, table_size)
    for size in SIZES:
        path = tmp / ('created-%d-%d-%d.qed' % (cluster_size, table_size,
                                                size))
        # qemu-img create applies the same limit as open, wrap-around
        # of qed_max_image_size() included.
        fits = size <= qed.max_image_size(cluster_size, table_size)
        assert _create(path, size, opts) == fits
        if fits:
            assert_like_qemu(path)


def test_refused_by_default(plain):
    helpers.assert_refused(plain, 'qed', 'unsupported_format')


def test_table_of_one_cluster(tmp):
    """qemu-img creates it, but no qemu opens a table of one cluster."""
    path = tmp / 'one-cluster-table.qed'
    assert _create(path, G, 'cluster_size=4k,table_size=1')
    assert helpers.qemu_info(path, 'qed') is None
    _check_hostile(path, 'table_bounds')


def test_data_from_convert(tmp):
    raw = tmp / 'random.raw'
    raw.write_bytes(random.Random(3).randbytes(1000000))
    path = tmp / 'data.qed'
    helpers.qemu_img('convert', '-O', 'qed', str(raw), str(path))
    assert assert_like_qemu(path)['virtual-size'] == 1000448


@pytest.mark.parametrize('backing_fmt', ('qcow2', 'raw'))
def test_backing_file_refused(tmp, backing_fmt):
    base = tmp / ('base.' + backing_fmt)
    helpers.create(base, backing_fmt, G)
    path = tmp / 'child.qed'
    helpers.qemu_img('create', '-q', '-f', 'qed', '-b', str(base), '-F',
                     backing_fmt, str(path))
    result = _check_hostile(path, 'backing_file')
    assert str(base) in result.failures['backing_file']
    helpers.assert_refused(path, 'qed', 'backing_file')


# edits of a 1 GiB image with 64 KiB clusters, 4-cluster tables, its L1
# table at 64 KiB, 5 clusters long; the check that must fail or None.
HOSTILE = {
    'unknown_feature': ([(16, '<Q', 8)], 'unknown_features'),
    'need_check': ([(16, '<Q', 2)], None),
    'no_probe': ([(16, '<Q', 4)], None),
    'compat_and_autoclear': ([(24, '<Q', 0xff), (32, '<Q', 0xff)], None),
    'cluster_2k': ([(4, '<I', 2048)], 'cluster_size'),
    'cluster_128m': ([(4, '<I', 128 << 20)], 'cluster_size'),
    'cluster_not_power': ([(4, '<I', 65536 + 4096)], 'cluster_size'),
    'table_size0': ([(8, '<I', 0)], 'table_size'),
    'table_size3': ([(8, '<I', 3)], 'table_size'),
    'table_size32': ([(8, '<I', 32)], 'table_size'),
    'table_size1': ([(8, '<I', 1)], 'table_bounds'),
    'table_size8': ([(8, '<I', 8)], 'table_bounds'),
    'image_size_odd': ([(48, '<Q', G + 100)], 'image_size'),
    'image_size_zero': ([(48, '<Q', 0)], None),
    'image_size_max': ([(48, '<Q', 1 << 46)], None),
    'image_size_too_big': ([(48, '<Q', (1 << 46) + 512)], 'image_size'),
    'header_size0': ([(12, '<I', 0)], None),
    'header_size2': ([(12, '<I', 2)], 'table_bounds'),
    'header_size_overflow': ([(12, '<I', 65536)], 'header_size'),
    'l1_at_0': ([(40, '<Q', 0)], 'table_bounds'),
    'l1_unaligned': ([(40, '<Q', 65536 + 512)], 'table_bounds'),
    'l1_beyond_eof': ([(40, '<Q', G)], 'table_bounds'),
    'l1_wraps': ([(40, '<Q', (1 << 64) - 65536)], 'table_bounds'),
    'backing_bit_only': ([(16, '<Q', 1)], 'backing_file'),
    'backing_name_long': ([(16, '<Q', 1), (56, '<I', 64), (60, '<I', 4096)],
                          'backing_file'),
    'backing_name_max': ([(16, '<Q', 1), (56, '<I', 64), (60, '<I', 4095)],
                         'backing_file'),
    'backing_beyond_header': ([(16, '<Q', 1), (56, '<I', 65530),
                               (60, '<I', 7)], 'backing_file'),
    'backing_header_overflow': ([(16, '<Q', 1), (12, '<I', 65536)],
                                'backing_file'),
    'backing_without_bit': ([(56, '<I', 64), (60, '<I', 4)], None),
}


@pytest.mark.parametrize('name', sorted(HOSTILE))
def test_hostile(tmp, plain, name):
    edits, check = HOSTILE[name]
    path = _mutate(plain, tmp / ('hostile-%s' % name), edits)
    result = _check_hostile(path, check)
    if check is None:
        assert result.safe, result.describe()


def test_backing_name_after_first_request(tmp, plain):
    edits = [(16, '<Q', 1), (56, '<I', 4090), (60, '<I', 12),
             (4090, None, b'far.qcow2\0\0\0')]
    path = _mutate(plain, tmp / 'far-name.qed', edits)
    assert "'far.qcow2'" in _check_hostile(path).failures['backing_file']
    edits = [(56, '<I', 40000), (60, '<I', 9),
             (40000, None, b'far.qcow2')]
    path = _mutate(path, tmp / 'farther-name.qed', edits)
    assert "'far.qcow2'" in _check_hostile(path).failures['backing_file']


@pytest.mark.parametrize('length', (4, 63, 64, 4096, 65536, 262144, 262145,
                                    300000, 327679))
def test_truncated(tmp, plain, length):
    """qemu rounds the length up to 512 bytes, then down to a cluster: the
    L1 table's last cluster must start before that.
    """
    path = _mutate(plain, tmp / ('truncated-%d' % length), [], length)
    result = _check_hostile(path)
    assert result.safe == (length > 4 * 65536 + 65536 - 512)


@pytest.mark.parametrize('seed', range(6))
def test_garbage(tmp, seed):
    data = qed.MAGIC + random.Random(seed).randbytes(8188)
    path = tmp / ('garbage-%d' % seed)
    path.write_bytes(data)
    result = _check_hostile(path)
    assert result.format == 'qed' and not result.safe
