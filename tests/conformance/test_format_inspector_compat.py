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


"""glance_vsize.glance.format_inspector against oslo.utils' own
``format_inspector`` API contract, on images made by qemu-img.

Each image goes through oslo.utils' InspectWrapper and ours, used as Glance
uses them (iterated or read, then closed, then ``formats``, ``format``,
``str()``, ``virtual_size``, ``actual_size``, ``safety_check()``): the same
types and exceptions, and qemu-img's virtual size from ours.
"""

import os

import pytest

pytest.importorskip('oslo_utils.imageutils.format_inspector')

from oslo_utils.imageutils import format_inspector as oslo  # noqa: E402

from glance_vsize.glance import format_inspector as compat  # noqa: E402
from glance_vsize import inspection  # noqa: E402
from tests import helpers  # noqa: E402

pytestmark = helpers.requires_qemu_img

#: (disk_format, qemu-img create options); oslo.utils agrees on the name.
IMAGES = [('qcow2', ''), ('vhd', ''), ('vhdx', ''), ('vmdk', ''),
          ('vdi', ''), ('raw', '')]
#: Formats oslo.utils reads as raw, and glance_vsize as what qemu opens.
OSLO_BLIND = [('vhd', 'subformat=fixed'), ('ploop', '')]


def _image(tmp_path, fmt, opts, size=3 << 20):
    path = helpers.create(tmp_path / ('img.' + fmt), fmt, size, opts)
    if fmt in ('raw', 'vhd') and 'fixed' in opts or fmt == 'raw':
        with open(path, 'r+b') as f:         # some data, not only zeroes
            f.write(os.urandom(4096))
    return path


def _through(module, path, by_read, **kwargs):
    """Read the file through ``module.InspectWrapper`` as Glance does;
    returns the wrapper (closed) and the bytes handed on.
    """
    with open(path, 'rb') as f:
        source = f if by_read else iter(lambda: f.read(65536), b'')
        wrapper = module.InspectWrapper(source, **kwargs)
        out = []
        try:
            if by_read:
                while chunk := wrapper.read(65536):
                    out.append(chunk)
            else:
                out.extend(wrapper)
        finally:
            wrapper.close()
    return wrapper, b''.join(out)


@pytest.mark.parametrize('by_read', [False, True], ids=['iter', 'read'])
@pytest.mark.parametrize('fmt,opts', IMAGES)
def test_same_answers_as_oslo_with_qemu_size(tmp_path, fmt, opts, by_read):
    path = _image(tmp_path, fmt, opts)
    qemu = helpers.qemu_info(path, fmt)['virtual-size']
    theirs, _ = _through(oslo, path, by_read)
    ours, data = _through(compat, path, by_read)
    assert data == open(path, 'rb').read()      # handed on unchanged
    assert isinstance(ours.formats, list) and len(ours.formats) == 1
    assert str(ours.format) == ours.format.NAME == str(theirs.format) == fmt
    assert ours.format.virtual_size == qemu
    assert ours.format.actual_size == helpers.qemu_info(
        path, 'raw')['virtual-size']
    assert ours.format.safety_check() is None
    assert theirs.format.safety_check() is None


@pytest.mark.parametrize('fmt,opts', OSLO_BLIND)
def test_formats_oslo_reads_as_raw_are_named_and_sized(tmp_path, fmt, opts):
    path = _image(tmp_path, fmt, opts)
    theirs, _ = _through(oslo, path, False)
    ours, _ = _through(compat, path, False)
    assert str(theirs.format) == 'raw'
    assert str(ours.format) == fmt
    assert fmt in compat.ALL_FORMATS
    assert ours.format.virtual_size == helpers.qemu_info(
        path, fmt)['virtual-size']


def test_unsafe_image_fails_safety_check_with_oslos_exception(tmp_path):
    helpers.create(tmp_path / 'base.qcow2', 'qcow2', 1 << 20)
    path = helpers.create(tmp_path / 'child.qcow2', 'qcow2', 1 << 20,
                          'backing_file=base.qcow2,backing_fmt=qcow2')
    for module in (oslo, compat):
        wrapper, _ = _through(module, path, False)
        assert str(wrapper.format) == 'qcow2'
        with pytest.raises(oslo.SafetyCheckFailed) as exc:
            wrapper.format.safety_check()
        assert 'backing_file' in exc.value.failures
        assert isinstance(exc.value.failures['backing_file'],
                          oslo.SafetyViolation)
    assert "'base.qcow2'" in str(exc.value.failures['backing_file'])


def test_extended_l2_qcow2_is_safe_as_qemu_opens_it(tmp_path):
    path = helpers.create(tmp_path / 'l2.qcow2', 'qcow2', 1 << 30,
                          'extended_l2=on')
    theirs, _ = _through(oslo, path, False)
    with pytest.raises(oslo.SafetyCheckFailed):     # oslo.utils refuses
        theirs.format.safety_check()
    ours, _ = _through(compat, path, False)
    ours.format.safety_check()
    assert ours.format.virtual_size == helpers.qemu_info(
        path, 'qcow2')['virtual-size']


def test_exceptions_are_oslos_own():
    assert compat.ImageFormatError is oslo.ImageFormatError
    assert compat.SafetyCheckFailed is oslo.SafetyCheckFailed
    assert compat.SafetyViolation is oslo.SafetyViolation
    assert set(oslo.ALL_FORMATS) <= set(compat.ALL_FORMATS)
    assert compat.get_inspector('qcow2').NAME == 'qcow2'
    assert compat.get_inspector('nonsense') is None


def test_no_decision_before_the_end(tmp_path):
    path = _image(tmp_path, 'qcow2', '')
    with open(path, 'rb') as f:
        wrapper = compat.InspectWrapper(iter([f.read(512)]))
        next(wrapper)
        assert wrapper.formats is None and wrapper.format is None


def test_expected_format_interrupts_a_mismatched_stream(tmp_path):
    path = _image(tmp_path, 'vdi', '')
    for module in (oslo, compat):
        with pytest.raises(oslo.ImageFormatError):
            _through(module, path, False, expected_format='qcow2')


def test_detect_file_format_like_oslo(tmp_path):
    for fmt, opts in IMAGES + OSLO_BLIND:
        path = _image(tmp_path, fmt, opts)
        ours = compat.detect_file_format(path)
        assert str(ours) == fmt
        assert ours.virtual_size == helpers.qemu_info(
            path, fmt)['virtual-size']
        ours.safety_check()
        if (fmt, opts) in IMAGES:
            assert str(oslo.detect_file_format(path)) == fmt
        os.unlink(path)


def test_inside_an_inspected_pass_the_filters_verdict_is_used(tmp_path):
    """One inspection per pass: the wrapper counts, does not inspect."""
    data = b'\0' * (1 << 20)
    verdict = inspection.Inspection(format='vhd', virtual_size=12345)
    current = compat.InspectedPass(lambda: len(data), lambda: verdict)
    with compat.inspected_pass(current):
        wrapper = compat.InspectWrapper(iter([data]))
    assert wrapper._stream is None
    assert list(wrapper) == [data]
    wrapper.close()
    assert str(wrapper.format) == 'vhd'
    assert wrapper.format.virtual_size == 12345
    # Outside the pass, the same bytes are inspected: raw zeroes.
    wrapper = compat.InspectWrapper(iter([data]))
    list(wrapper)
    assert str(wrapper.format) == 'raw'


def test_bytes_other_than_the_inspected_ones_get_no_verdict():
    verdict = inspection.Inspection(format='raw', virtual_size=512)
    current = compat.InspectedPass(lambda: 512, lambda: verdict)
    with compat.inspected_pass(current):
        wrapper = compat.InspectWrapper(iter([b'x' * 1024]))
    list(wrapper)
    with pytest.raises(oslo.ImageFormatError):
        wrapper.format
