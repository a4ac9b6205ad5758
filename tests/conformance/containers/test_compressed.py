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


"""container_format=compressed: images from qemu-img compressed by the
real gzip, bzip2, xz and zstd tools; hostile and broken streams; bombs.
"""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

import glance_vsize
from glance_vsize import containers
from glance_vsize.containers import decoders
from glance_vsize.containers import zstd
from glance_vsize import inspection
from tests.conformance import containers as common
from tests import containergen
from tests import helpers
from tests import imagegen

pytestmark = helpers.requires_qemu_img

G = 1 << 30


def _needs(tool):
    return pytest.mark.skipif(
        shutil.which(tool) is None and not os.environ.get('CI'),
        reason='%s is not installed' % tool)


TOOLS = [pytest.param(t, marks=_needs(t)) for t in containergen.TOOLS]


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """Images of every kind qemu-img writes, some holding data."""
    out = tmp_path_factory.mktemp('images')
    made = {
        'qcow2': helpers.create(out / 'a.qcow2', 'qcow2', G + 512),
        'vmdk': helpers.create(out / 'a.vmdk', 'vmdk', 2 * G - 512,
                               'subformat=streamOptimized'),
        'vhd': helpers.create(out / 'a.vhd', 'vhd', G + 512),
        'vhdx': helpers.create(out / 'a.vhdx', 'vhdx', 10 * G),
        'vdi': helpers.create(out / 'a.vdi', 'vdi', G),
    }
    raw = imagegen.payload(str(out / 'data.raw'), 8 << 20, 7, mbr=True)
    made['raw'] = raw
    helpers.qemu_img('convert', '-q', '-f', 'raw', '-O', 'qcow2', '-c', raw,
                     str(out / 'data.qcow2'))
    made['data-qcow2'] = str(out / 'data.qcow2')
    return made


def _fmt(kind):
    return kind.split('-')[-1]


@pytest.mark.parametrize('tool', TOOLS)
@pytest.mark.parametrize('kind', ['qcow2', 'vmdk', 'vhd', 'vhdx', 'vdi',
                                  'raw', 'data-qcow2'])
def test_compressed_images_are_sized_like_qemu(images, tmp_path, tool, kind):
    src = images[kind]
    path = containergen.compress(src, tool, str(tmp_path / ('img.' + tool)))
    result = common.assert_inner(path, 'compressed', src, _fmt(kind))
    assert result.details['compression'] == tool
    assert result.details['expanded_size'] == os.path.getsize(src)


@pytest.mark.parametrize('tool,args', [
    ('gzip', ['-1']), ('gzip', ['-9', '--no-name']), ('bzip2', ['-1']),
    ('xz', ['-9e']), ('xz', ['--check=sha256', '-0']),
    ('zstd', ['-19']), ('zstd', ['--long=27', '--no-check']),
    ('zstd', ['--ultra', '-22'])])
def test_tool_options(images, tmp_path, tool, args):
    if shutil.which(tool) is None:
        pytest.skip('%s is not installed' % tool)
    src = images['data-qcow2']
    path = containergen.compress(src, tool, str(tmp_path / 'x'), args)
    common.assert_inner(path, 'compressed', src, 'qcow2')


@pytest.mark.parametrize('tool', TOOLS)
def test_trailing_garbage_truncation_and_corruption(images, tmp_path, tool):
    src = images['data-qcow2']
    data = open(containergen.compress(src, tool), 'rb').read()
    path = tmp_path / 'x'
    path.write_bytes(data + b'garbage!')
    common.assert_refused(str(path), 'compressed', 'trailing_data',
                          text='offset %d' % len(data))
    for cut in (len(data) // 2, len(data) - 1, 4):
        path.write_bytes(data[:cut])
        for _mode, result in common.all_modes(str(path), 'compressed'):
            assert not result.safe
            assert set(result.failures) & {'truncated', 'compression'}, \
                result.describe()
    corrupt = bytearray(data)
    for i in range(len(data) // 3, len(data) // 3 + 64):
        corrupt[i] ^= 0x55
    path.write_bytes(bytes(corrupt))
    for _mode, result in common.all_modes(str(path), 'compressed'):
        assert not result.safe, result.describe()


def test_what_is_not_gzip_bzip2_xz_or_zstd(images, tmp_path):
    common.assert_refused(images['qcow2'], 'compressed', 'compression',
                          text='no known compression')
    path = tmp_path / 'a.zip'
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        archive.write(images['qcow2'], 'a.qcow2')
    common.assert_refused(str(path), 'compressed', 'compression',
                          text='a zip archive')
    empty = tmp_path / 'empty'
    empty.write_bytes(b'')
    common.assert_refused(str(empty), 'compressed', 'truncated')
    tiny = tmp_path / 'tiny'
    tiny.write_bytes(b'\x1f\x8b')
    common.assert_refused(str(tiny), 'compressed', 'compression')


def test_disk_format_is_checked_inside(images, tmp_path):
    path = containergen.compress(images['qcow2'], 'gzip',
                                 str(tmp_path / 'q.gz'))
    result = common.assert_refused(path, 'compressed', 'format_mismatch',
                                   disk_format='vmdk')
    assert 'in the gzip data: disk_format is vmdk but the content is ' \
        'qcow2' in result.failures['format_mismatch']


def test_unsafe_inner_image_is_refused_from_its_header(tmp_path):
    base_img = helpers.create(tmp_path / 'base.qcow2', 'qcow2', G)
    child = helpers.create(tmp_path / 'child.qcow2', 'qcow2', G,
                           'backing_file=%s,backing_fmt=qcow2' % base_img)
    head = containergen.compress(child, 'gzip', str(tmp_path / 'c.gz'))
    bomb = containergen.gzip_bomb(str(tmp_path / 'tail.gz'), 256 << 20)
    path = tmp_path / 'big.gz'
    path.write_bytes(open(head, 'rb').read() + open(bomb, 'rb').read())
    common.assert_refused(str(path), 'compressed', 'backing_file',
                          disk_format='qcow2', text='in the gzip data: ')
    reader = glance_vsize.InspectingReader(
        helpers.chunked(str(path), 4096), 'qcow2', fail_fast=True,
        container_format='compressed')
    with pytest.raises(glance_vsize.ImageRejected) as exc:
        for _chunk in reader:
            pass
    assert 'backing_file' in exc.value.inspection.failures
    assert reader.bytes_read < 16384


# Bombs ---------------------------------------------------------------------


@pytest.fixture(scope='module')
def bomb_10g(tmp_path_factory):
    """10 GiB of zeros in one gzip member (10 MiB, 1011:1)."""
    path = str(tmp_path_factory.mktemp('bomb') / 'zeros.gz')
    return containergen.gzip_bomb(path, 10 * G)


def test_10_gib_gzip_bomb_is_refused_by_the_default_ratio(bomb_10g):
    reader = glance_vsize.InspectingReader(
        helpers.chunked(bomb_10g, 65536), 'raw', fail_fast=True,
        container_format='compressed')
    with pytest.raises(glance_vsize.ImageRejected) as exc:
        for _chunk in reader:
            pass
    failures = exc.value.inspection.failures
    assert list(failures) == ['compression_ratio'], failures
    assert 'more than 1000:1 (max_compression_ratio)' in \
        failures['compression_ratio']
    # Refused once 4 GiB were expanded: 4 MiB of the 10 MiB read.
    assert reader.bytes_read < os.path.getsize(bomb_10g) // 2
    result = glance_vsize.inspect_file(bomb_10g, 'raw',
                                       container_format='compressed')
    assert set(result.failures) == {'compression_ratio'}


@pytest.mark.parametrize('tool', TOOLS)
def test_expanded_size_cap_stops_decompression(tmp_path, tool):
    path = containergen.zeros_through(tool, 64 << 20, str(tmp_path / 'z'))
    cap = 16 << 20
    policy = inspection.Policy(max_expanded_size=cap)
    result = common.assert_refused(path, 'compressed', 'expanded_size',
                                   policy=policy,
                                   text='more than %d bytes' % cap)
    assert result.virtual_size is None
    inspector = containers.stream_inspector('compressed', None, policy)
    inspector.feed(open(path, 'rb').read())
    assert inspector.refusal is not None
    # What was decompressed: at most one piece beyond the cap.
    assert inspector.inner.position <= cap
    inspector.feed(b'more bytes are only counted')
    assert inspector.finish().failures == inspector.refusal.failures


@pytest.mark.parametrize('tool', TOOLS)
def test_ratio_applies_beyond_the_exempt_size(tmp_path, tool):
    path = containergen.zeros_through(tool, 64 << 20, str(tmp_path / 'z'))
    strict = inspection.Policy(ratio_exempt_size=8 << 20,
                               max_compression_ratio=100)
    common.assert_refused(path, 'compressed', 'compression_ratio',
                          policy=strict, text='more than 100:1')
    lenient = inspection.Policy(ratio_exempt_size=128 << 20,
                                max_compression_ratio=100)
    for _mode, result in common.all_modes(path, 'compressed', 'raw',
                                          lenient):
        assert result.safe, result.describe()
        assert result.virtual_size == 64 << 20


@pytest.mark.parametrize('tool', TOOLS)
def test_sparse_3_tib_qcow2_is_not_a_bomb(tmp_path, tool):
    """240 KiB that compress 500:1 to 1100:1: under the default policy
    the ratio does not apply to so small an expansion.
    """
    src = helpers.create(tmp_path / 'huge.qcow2', 'qcow2', 3 << 40)
    path = containergen.compress(src, tool, str(tmp_path / 'huge.c'))
    assert os.path.getsize(src) > 400 * os.path.getsize(path)
    common.assert_inner(path, 'compressed', src, 'qcow2')


def test_nonfatal_caps_only_warn(tmp_path):
    path = containergen.zeros_through('gzip', 8 << 20, str(tmp_path / 'z'))
    policy = inspection.Policy(max_expanded_size=1 << 20,
                               nonfatal_checks=frozenset({'expanded_size'}))
    result = glance_vsize.inspect_file(path, 'raw', policy,
                                       container_format='compressed')
    assert result.safe
    assert result.virtual_size == 8 << 20
    assert 'expanded_size' in result.warnings


_RSS_SCRIPT = '''
import resource, sys
from glance_vsize import containers, inspection
policy = inspection.Policy(max_expanded_size=0, max_compression_ratio=0)
inspector = containers.stream_inspector('compressed', 'raw', policy)
with open(sys.argv[1], 'rb') as f:
    for chunk in iter(lambda: f.read(65536), b''):
        inspector.feed(chunk)
result = inspector.finish()
assert result.safe and result.virtual_size == int(sys.argv[2]), result
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
'''


def _peak_rss_kib(path, size):
    out = subprocess.run(
        [sys.executable, '-c', _RSS_SCRIPT, path, str(size)],
        capture_output=True, text=True, check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.dirname(os.path.abspath(__file__))))))
    return int(out.stdout)


def test_memory_does_not_grow_with_the_expanded_size(tmp_path):
    """Peak RSS for 64 MiB and for 4 GiB expanded: the same, within a few
    MiB (pieces are 256 KiB and nothing accumulates).
    """
    small = containergen.gzip_bomb(str(tmp_path / 's.gz'), 64 << 20)
    large = containergen.gzip_bomb(str(tmp_path / 'l.gz'), 4 * G)
    grow = _peak_rss_kib(large, 4 * G) - _peak_rss_kib(small, 64 << 20)
    assert grow < 8 << 10, 'peak RSS grew by %d KiB' % grow


@pytest.mark.parametrize('cls,tool', [
    (decoders.GzipDecoder, 'gzip'), (decoders.Bzip2Decoder, 'bzip2'),
    (decoders.XzDecoder, 'xz'), (zstd.ZstdDecoder, 'zstd')])
def test_decoders_yield_bounded_pieces(tmp_path, cls, tool):
    if shutil.which(tool) is None:
        pytest.skip('%s is not installed' % tool)
    path = containergen.zeros_through(tool, 32 << 20, str(tmp_path / 'z'))
    decoder = cls()
    data = open(path, 'rb').read()
    total = 0
    for piece in decoder.decode(data):
        assert len(piece) <= decoders.PIECE + 2 * zstd.BLOCK_MAX
        total += len(piece)
    decoder.finish()
    assert total == 32 << 20
    assert decoder.offset == len(data)


def test_zstd_skippable_frames_and_window_limit(tmp_path):
    if shutil.which('zstd') is None:
        pytest.skip('zstd is not installed')
    one = open(containergen.zeros_through('zstd', 1 << 20,
                                          str(tmp_path / 'a')), 'rb').read()
    skippable = (0x184D2A53).to_bytes(4, 'little') + (5).to_bytes(
        4, 'little') + b'skip!'
    path = tmp_path / 'frames.zst'
    path.write_bytes(one + skippable + one)
    for _mode, result in common.all_modes(str(path), 'compressed', 'raw'):
        assert result.safe and result.virtual_size == 2 << 20
    # A 2 GiB window (--long=31 from a pipe) needs more than libzstd's
    # default limit, which zstd -d applies too.
    long = containergen.zeros_through('zstd', 1 << 20, str(tmp_path / 'l'),
                                      ['--long=31'])
    common.assert_refused(long, 'compressed', 'compression',
                          text='too much memory')


def test_zstd_without_the_zstandard_package(tmp_path, monkeypatch):
    if shutil.which('zstd') is None:
        pytest.skip('zstd is not installed')
    path = containergen.zeros_through('zstd', 4096, str(tmp_path / 'z'))
    monkeypatch.setattr(zstd, 'zstandard', None)
    common.assert_refused(path, 'compressed', 'compression',
                          text='zstandard Python package')
