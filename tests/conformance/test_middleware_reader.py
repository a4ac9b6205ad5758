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

"""The reader the paste filter puts in ``wsgi.input``: Glance's 64 KiB
reads are served from 1 MiB blocks of the body, each inspected before any
of it is handed on.  (The filter in a real Glance: tests/functional.)
"""

import io
import random
import warnings

import pytest

import glance_vsize
from tests import helpers

with warnings.catch_warnings():     # eventlet's, through oslo.messaging
    warnings.simplefilter('ignore')
    from glance.common import exception as glance_exception
    from glance_store import exceptions as store_exceptions

    from glance_vsize.glance import middleware

BLOCK = middleware._READ_BLOCK
GLANCE_CHUNK = 64 << 10


class Source(io.BytesIO):
    """A request body that records the sizes it is asked for."""

    def __init__(self, data):
        super().__init__(data)
        self.asked = []

    def read(self, size=-1):
        self.asked.append(size)
        return super().read(size)


def _reader(data, disk_format):
    source = Source(data)
    inner = glance_vsize.InspectingReader(
        source, disk_format, fail_fast=True, expected_size=len(data))
    return source, middleware._RefusingReader(inner, 'img', disk_format)


@pytest.fixture(scope='module')
def qcow2_with_data(tmp_path_factory):
    """A qcow2 of 3.5 MiB of random data, so that the body spans blocks."""
    tmp = tmp_path_factory.mktemp('reader')
    raw = tmp / 'data.raw'
    raw.write_bytes(random.Random(3).randbytes(3584 << 10))
    path = str(tmp / 'data.qcow2')
    helpers.qemu_img('convert', '-q', '-f', 'raw', '-O', 'qcow2', str(raw),
                     path)
    return path


def test_glance_reads_the_same_bytes_from_blocks(qcow2_with_data):
    data = open(qcow2_with_data, 'rb').read()
    assert len(data) > 3 * BLOCK
    source, reader = _reader(data, 'qcow2')
    got = []
    while True:
        chunk = reader.read(GLANCE_CHUNK)
        assert len(chunk) <= GLANCE_CHUNK
        if not chunk:
            break
        got.append(chunk)
    assert b''.join(got) == data
    # The body is read a block at a time, never in Glance's small reads.
    assert set(source.asked[:-1]) == {BLOCK}
    result = reader.reader.finish(check=False)
    assert result.safe
    assert result.virtual_size == helpers.qemu_info(
        qcow2_with_data, 'qcow2')['virtual-size']


def test_reads_of_other_sizes(qcow2_with_data):
    data = open(qcow2_with_data, 'rb').read()
    _source, reader = _reader(data, 'qcow2')
    assert reader.read(0) == b''
    head = reader.read(10)
    assert head == data[:10]
    big = reader.read(3 * BLOCK)        # what is left of the block
    assert big == data[10:BLOCK]
    assert reader.read(GLANCE_CHUNK) == data[BLOCK:BLOCK + GLANCE_CHUNK]
    assert reader.read(-1) == data[BLOCK + GLANCE_CHUNK:]   # all the rest
    assert reader.read(GLANCE_CHUNK) == b''
    assert reader.reader.result.safe


def test_unsafe_block_is_refused_before_any_of_it_is_handed_on(tmp_path):
    base = helpers.create(tmp_path / 'base.raw', 'raw', 1 << 30)
    child = str(tmp_path / 'child.qcow2')
    helpers.qemu_img('create', '-q', '-f', 'qcow2', '-b', base, '-F',
                     'raw', child, str(1 << 30))
    data = open(child, 'rb').read()
    data += random.Random(4).randbytes(3 * BLOCK - len(data))
    source, reader = _reader(data, 'qcow2')
    with pytest.raises(middleware.Refused) as exc:
        reader.read(GLANCE_CHUNK)
    assert 'backing_file' in str(exc.value)
    # Glance's upload handler catches it as InvalidImageData, its stage
    # handler as glance_store's Invalid: a refusal, not an internal error.
    assert isinstance(exc.value, glance_exception.InvalidImageData)
    assert isinstance(exc.value, store_exceptions.Invalid)
    assert exc.value.message == str(exc.value)
    assert reader.status == 400
    assert reader.refused is not None
    assert source.asked == [BLOCK]      # one block read, none handed on


def test_a_failed_save_after_a_stored_upload_is_logged_not_raised(caplog):
    """Recording virtual_size through Glance's repository fails (here: no
    configuration, no database): the failure is logged with the image ID
    and nothing is raised, so the upload keeps Glance's answer.
    """
    import webob

    class _Reader:
        def finish(self, check=True):
            return glance_vsize.Inspection(format='raw', virtual_size=512)

    class _Filtered:
        reader = _Reader()

    request = webob.Request.blank('/v2/images/abc/file')
    request.context = object()
    with caplog.at_level('ERROR'):
        middleware.VirtualSizeMiddleware._set_virtual_size(
            request, 'abc-123', _Filtered())
    assert 'Image abc-123 was stored, but glance_vsize could not record ' \
        'its virtual_size' in caplog.text
