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


"""The engine's drivers and arbitration, with small inspectors of our own
plugged in through the same interface the format modules use.
"""

import io
import os
import random

import pytest

import glance_vsize
from glance_vsize import engine
from glance_vsize.formats import base
from glance_vsize import inspection
from glance_vsize import seekable
from glance_vsize import stream


class Magic(base.FormatInspector):
    """Matches b'MAGC' at 0; size from the 8 bytes at ``size_at``; may
    want the last bytes of the image too.
    """

    name = 'qcow2'

    def __init__(self, size_at=8, tail=0, fail_at=None):
        self.size_at, self.tail, self.fail_at = size_at, tail, fail_at

    def inspect(self, probe, policy):
        head = yield base.Read(0, 4)
        if head != b'MAGC':
            return
        probe.match('magic MAGC at offset 0')
        raw = yield from base.read_exact(self.size_at, 8, 'size field')
        probe.virtual_size = int.from_bytes(raw, 'big')
        if self.fail_at is not None:
            yield from base.read_exact(self.fail_at, 1, 'marker')
            probe.fail('marker', 'found at offset %d' % self.fail_at)
        if self.tail:
            end = yield base.Tail(self.tail)
            probe.details['tail'] = end


class Backwards(Magic):
    def inspect(self, probe, policy):
        yield from super().inspect(probe, policy)
        yield base.Read(0, 4)


class Greedy(Magic):
    def inspect(self, probe, policy):
        yield from super().inspect(probe, policy)
        yield base.Read(16, base.MAX_REGION + 1)


class Broken(Magic):
    def inspect(self, probe, policy):
        yield from super().inspect(probe, policy)
        raise ZeroDivisionError('bug')


def image(size=1 << 20, vsize=12345):
    data = bytearray(size)
    data[0:4] = b'MAGC'
    data[8:16] = vsize.to_bytes(8, 'big')
    data[-4:] = b'TAIL'
    return bytes(data)


def streamed(data, inspectors, chunk=4096 + 7, disk_format=None):
    session = stream.StreamInspector(disk_format, inspectors=inspectors)
    for i in range(0, len(data), chunk):
        session.feed(data[i:i + chunk])
    return session.finish()


def seeked(tmp_path, data, inspectors, disk_format=None):
    path = tmp_path / 'image'
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return seekable.inspect_fd(fd, disk_format, inspectors=inspectors)
    finally:
        os.close(fd)


@pytest.mark.parametrize('chunk', [1, 3, 512, 4103, 1 << 20])
def test_both_modes_answer_reads_and_tails_alike(tmp_path, chunk):
    data = image()
    inspectors = [Magic(size_at=70000, tail=6)]
    data = data[:70000] + (777).to_bytes(8, 'big') + data[70008:]
    via_stream = streamed(data, inspectors, chunk)
    via_seek = seeked(tmp_path, data, inspectors)
    for result in (via_stream, via_seek):
        assert result.format == 'qcow2'
        assert result.virtual_size == 777
        assert result.details['tail'] == b'\0\0TAIL'
        assert result.safe


def test_no_signature_is_raw_rounded_up_like_qemu(tmp_path):
    data = b'plain text, not a disk image\n' * 35
    for result in (streamed(data, [Magic()]),
                   seeked(tmp_path, data, [Magic()])):
        assert (result.format, result.virtual_size) == ('raw', 1024)
        assert result.safe


def test_empty_stream_is_an_empty_raw_image():
    result = streamed(b'', [Magic()])
    assert (result.format, result.virtual_size, result.safe) == (
        'raw', 0, True)


def test_going_backwards_in_a_stream_is_a_named_failure(tmp_path):
    inspectors = [Backwards(size_at=70000)]
    result = streamed(image(), inspectors)
    assert 'stream_order' in result.failures
    assert 'at offset 0' in result.failures['stream_order']
    assert seeked(tmp_path, image(), inspectors).safe


def test_oversized_region_is_refused_without_reading_it(tmp_path):
    for result in (streamed(image(), [Greedy()]),
                   seeked(tmp_path, image(), [Greedy()])):
        assert 'region_bounds' in result.failures


def test_a_bug_in_an_inspector_refuses_instead_of_raising(tmp_path):
    for result in (streamed(image(), [Broken()]),
                   seeked(tmp_path, image(), [Broken()])):
        assert 'inspector_error' in result.failures
        assert 'ZeroDivisionError' in result.failures['inspector_error']


def test_truncated_header_names_the_offset():
    result = streamed(b'MAGC\0\0', [Magic()])
    assert result.failures['truncated'].startswith(
        'size field needs 8 bytes at offset 8')


def test_declared_format_contradicted_by_content():
    result = streamed(image(), [Magic()], disk_format='vmdk')
    assert 'format_mismatch' in result.failures
    assert 'disk_format is vmdk but the content is qcow2' in \
        result.failures['format_mismatch']
    raw = streamed(b'\0' * 4096, [Magic()], disk_format='qcow2')
    assert 'format_mismatch' in raw.failures


def test_policy_can_make_a_check_a_warning():
    policy = inspection.Policy(nonfatal_checks=frozenset({'marker'}))
    session = stream.StreamInspector(None, policy,
                                     inspectors=[Magic(fail_at=100)])
    session.feed(image())
    result = session.finish()
    assert result.safe
    assert 'marker' in result.warnings


class Chunks:
    """A file-like source that counts what was pulled from it."""

    def __init__(self, data, limit=None):
        self.buf = io.BytesIO(data)
        self.pulled = 0

    def read(self, n=-1):
        data = self.buf.read(n)
        self.pulled += len(data)
        return data


def test_reader_hands_every_byte_on_unchanged():
    data = random.Random(1).randbytes(300000)
    reader = glance_vsize.InspectingReader(Chunks(data))
    out = []
    while True:
        chunk = reader.read(65536)
        if not chunk:
            break
        assert len(chunk) <= 65536
        out.append(chunk)
    assert b''.join(out) == data
    assert reader.result.virtual_size == 300032


def test_reader_over_an_iterable_honours_read_sizes():
    data = random.Random(2).randbytes(10000)
    pieces = [data[i:i + 3000] for i in range(0, len(data), 3000)]
    reader = glance_vsize.InspectingReader(iter([b''] + pieces))
    got = [reader.read(1000) for _ in range(10)]
    assert all(len(chunk) == 1000 for chunk in got)
    assert reader.read(-1) == b''
    assert b''.join(got) == data
    assert reader.result is not None


def test_reader_result_waits_for_the_end_of_the_stream():
    reader = glance_vsize.InspectingReader(
        Chunks(random.Random(3).randbytes(5000)))
    reader.read(100)
    assert reader.result is None
    reader.read()
    assert reader.result.format == 'raw'


def test_fail_fast_refuses_before_the_rest_is_read():
    data = image(size=64 << 20)
    source = Chunks(data)
    reader = stream.InspectingReader(source, fail_fast=True)
    reader._inspector = stream.StreamInspector(
        None, inspectors=[Magic(fail_at=200000)])
    with pytest.raises(inspection.ImageRejected) as exc:
        while reader.read(65536):
            pass
    assert 'marker' in str(exc.value)
    assert exc.value.inspection.failures['marker'] == \
        'found at offset 200000'
    assert source.pulled <= 200000 + 65536


def test_multiple_formats_in_one_image_are_refused(tmp_path):
    from glance_vsize.formats import iso
    data = bytearray(image(size=1 << 20))
    data[32768:32775] = b'\x01CD001\x01'
    inspectors = [Magic(), iso.IsoInspector()]
    for result in (streamed(bytes(data), inspectors),
                   seeked(tmp_path, bytes(data), inspectors)):
        assert 'multiple_formats' in result.failures
        assert 'iso' in result.failures['multiple_formats']


def test_engine_step_never_lets_an_exception_escape():
    class Raises(base.FormatInspector):
        name = 'x'

        def inspect(self, probe, policy):
            raise RuntimeError('before the first request')
            yield

    probe, request = engine.start([Raises()], inspection.DEFAULT_POLICY)[0]
    assert request is None and probe.done and not probe.matched
