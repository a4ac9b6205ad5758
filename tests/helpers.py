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


"""Shared test helpers: real images from qemu-img, both inspection modes."""

import json
import os
import shutil
import struct
import subprocess

import pytest

import glance_vsize
from glance_vsize import ranged as glance_ranged

#: The chunk sizes every streaming check runs with (the issue's four).
CHUNK_SIZES = (512, 4096 + 7, 65536, 1 << 20)

QEMU_NAME = {'vhd': 'vpc', 'ploop': 'parallels', 'iso': 'raw'}

#: Issue 14's bound on what a ranged inspection (backfill, a location)
#: reads of an image that is not in a container.
READ_BUDGET = 2 << 20
#: Random data in the images of the ranged-read tests: read whole, each
#: costs more than READ_BUDGET.
RANDOM_DATA = 24 << 20

requires_qemu_img = pytest.mark.skipif(
    shutil.which('qemu-img') is None and not os.environ.get('CI'),
    reason='qemu-img (Debian qemu-utils) is not installed')


def run_qemu_img(cmd, attempts=5):
    """Run a qemu-img command line; retry the one failure that is qemu's,
    not ours: its PBKDF2 benchmark (LUKS key slots) fails at random where
    the thread CPU clock is coarse ("Unable to get accurate CPU usage").
    """
    for _ in range(attempts):
        proc = subprocess.run(cmd, capture_output=True)
        if proc.returncode == 0 or b'accurate CPU usage' not in proc.stderr:
            break
    return proc


def qemu_img(*args):
    subprocess.run(('qemu-img',) + args, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def create(path, fmt, size, opts=''):
    """``qemu-img create -f FMT [-o OPTS] PATH SIZE``; returns path."""
    cmd = ['create', '-q', '-f', QEMU_NAME.get(fmt, fmt)]
    if opts:
        cmd += ['-o', opts]
    qemu_img(*(cmd + [str(path), str(size)]))
    return str(path)


def qemu_info(path, fmt=None):
    """``qemu-img info --output=json``; None when qemu cannot open it."""
    cmd = ['qemu-img', 'info', '--output=json']
    if fmt:
        cmd += ['-f', QEMU_NAME.get(fmt, fmt)]
    proc = subprocess.run(cmd + [str(path)], capture_output=True, text=True)
    if proc.returncode:
        return None
    return json.loads(proc.stdout)


def chunked(path, size):
    with open(path, 'rb') as f:
        while True:
            data = f.read(size)
            if not data:
                return
            yield data


def stream(path, disk_format=None, chunk_size=65536, policy=None,
           container_format=None):
    """Inspect ``path`` in streaming mode; check the bytes pass unchanged."""
    reader = glance_vsize.InspectingReader(
        chunked(path, chunk_size), disk_format, policy,
        container_format=container_format)
    passed = sum(len(chunk) for chunk in reader)
    assert passed == os.path.getsize(path)
    return reader.result


def ranged(path, disk_format=None, policy=None, container_format=None):
    """Inspect ``path`` by ranged reads (:mod:`glance_vsize.ranged`);
    returns the :class:`~glance_vsize.ranged.RangedInspection`.
    """
    with open(path, 'rb') as f:
        fd = f.fileno()
        return glance_ranged.inspect_image(
            os.fstat(fd).st_size,
            read_at=lambda offset, length: os.pread(fd, length, offset),
            disk_format=disk_format, container_format=container_format,
            policy=policy)


def all_modes(path, disk_format=None, policy=None, container_format=None):
    """Yield ``(mode, Inspection)``: seekable, ranged, then every chunk
    size.
    """
    yield 'seekable', glance_vsize.inspect_file(
        str(path), disk_format, policy, container_format=container_format)
    yield 'ranged', ranged(path, disk_format, policy,
                           container_format).inspection
    for size in CHUNK_SIZES:
        yield 'stream/%d' % size, stream(path, disk_format, size, policy,
                                         container_format)


def assert_like_qemu(path, disk_format, variant=None, policy=None):
    """The image is safe, of ``disk_format``, and sized as qemu-img says,
    in every mode, with and without the declared disk_format.
    """
    info = qemu_info(path, disk_format)
    assert info is not None, 'qemu-img cannot open %s' % path
    for declared in (disk_format, None):
        for mode, result in all_modes(path, declared, policy):
            where = '%s [%s, declared %s]' % (path, mode, declared)
            assert result.failures == {}, where + ': ' + result.describe()
            assert result.format == disk_format, where
            assert result.virtual_size == info['virtual-size'], where
            if variant is not None:
                assert result.variant == variant, where
    return info


def assert_refused(path, disk_format, check, policy=None):
    """Every mode refuses the image, naming ``check``."""
    for mode, result in all_modes(path, disk_format, policy):
        assert not result.safe, '%s [%s] accepted' % (path, mode)
        assert check in result.failures, '%s [%s]: %s' % (
            path, mode, result.describe())


def assert_hostile(path, check=None, *, disk_format, policy=None,
                   agree=True):
    """The contract for hostile input, in every mode: a verdict, never an
    exception or an ``inspector_error``; ``check`` named when given; and a
    verdict of safe is one qemu-img agrees with (it opens the bytes as
    ``disk_format`` and reports the same size).  With ``agree``, every mode
    reaches the same verdict (no ``stream_order`` either).

    :returns: the seekable verdict.
    """
    info = qemu_info(path, disk_format)
    verdicts = set()
    first = None
    for mode, result in all_modes(path, disk_format, policy):
        first = first or result
        where = '%s [%s]: %s' % (path, mode, result.describe())
        assert 'inspector_error' not in result.failures, where
        if check is not None:
            assert check in result.failures, where
        if result.safe:
            assert info is not None, where + ' (qemu-img cannot open it)'
            assert result.virtual_size == info['virtual-size'], where
        if agree:
            assert 'stream_order' not in result.failures, where
            verdicts.add((result.safe, tuple(sorted(result.failures)),
                          result.virtual_size))
    assert len(verdicts) <= 1, verdicts
    return first


def mutated_copy(src, dst, edits, length=None):
    """Copy ``src`` to ``dst`` with ``(offset, struct format, value)``
    edits (format ``None``: ``value`` is raw bytes), truncated to
    ``length`` when given; returns ``dst`` as a string.
    """
    with open(src, 'rb') as f:
        data = bytearray(f.read())
    for offset, fmt, value in edits:
        raw = value if fmt is None else struct.pack(fmt, value)
        data[offset:offset + len(raw)] = raw
    if length is not None:
        del data[length:]
    with open(dst, 'wb') as f:
        f.write(data)
    return str(dst)


def patch_fields(src, dst, module, *edits):
    """:func:`mutated_copy` with ``(field name, value)`` edits of a format
    module's little-endian header (its ``_LAYOUT`` and ``OFFSETS``), or
    ``(offset, bytes)``.
    """
    layout = dict(module._LAYOUT)
    return mutated_copy(src, dst, [
        (module.OFFSETS[where], '<' + layout[where], value)
        if isinstance(where, str) else (where, None, value)
        for where, value in edits])
