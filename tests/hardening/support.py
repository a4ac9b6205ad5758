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

"""Drivers, oracles and invariants shared by the hardening tests.

Three ways to run the engine on the same bytes:

* :func:`seekable`, :func:`streamed` and :func:`stream_file`: the real
  drivers (``inspect_fd`` on a memfd, ``StreamInspector`` and
  ``InspectingReader``), the seekable one optionally counting every byte
  asked of ``os.pread``;
* :class:`CutInspector`: the engine's own probes and ``decide`` on the
  first ``cut`` bytes of a file, for thousands of cuts of one image.  It
  answers requests exactly as ``inspect_fd`` does (``pread`` clamped at the
  cut) and re-runs a probe only when one of the answers it got would
  change: a cut then costs microseconds, not a fresh inspection (a
  probe that asks for the image's length re-runs on every cut).
  Its verdicts are compared with ``inspect_fd``'s on a sample of cuts.

:func:`qemu_size` is the oracle: what ``qemu-img info -f FMT`` says about
the bytes, or ``None`` when qemu refuses to open them.
"""

import contextlib
import json
import os
import re
import subprocess
import tempfile

import glance_vsize
from glance_vsize import engine
from glance_vsize.formats import base
from glance_vsize import inspection
from glance_vsize import registry
from glance_vsize import seekable as seekable_mod
from glance_vsize import stream as stream_mod

QEMU_NAME = {'vhd': 'vpc', 'ploop': 'parallels', 'iso': 'raw', 'ami': 'raw',
             'aki': 'raw', 'ari': 'raw'}

#: A check name: what a refusal must carry.
CHECK_NAME = re.compile(r'^[a-z][a-z0-9_]*$')

#: Failures that mean a bug in the engine rather than a finding about the
#: image: format code raised something other than FormatError, or asked
#: for a region beyond the engine's last line of defence instead of
#: checking the header field against its own bound first.
BUG_CHECKS = frozenset({'inspector_error', 'region_bounds'})

#: Policies the invariants are checked under: the default, and one that
#: accepts every detected format, so that QED and LUKS are judged too.
ALL_FORMATS = inspection.Policy(allowed_formats=frozenset(
    inspection.GLANCE_DISK_FORMATS | {'qed', 'luks'}))


def long_run():
    """Whether the long (exhaustive) variants of the tests were asked for:
    ``HYPOTHESIS_PROFILE=long`` (what ``tools/fuzz --long`` sets).
    """
    return os.environ.get('HYPOTHESIS_PROFILE') == 'long'


# The oracle

def qemu_info(path, fmt):
    """``qemu-img info -f FMT --output=json PATH``, or None if it fails."""
    proc = subprocess.run(
        ['qemu-img', 'info', '--output=json', '-f', QEMU_NAME.get(fmt, fmt),
         str(path)], capture_output=True, text=True, timeout=60)
    if proc.returncode:
        return None
    return json.loads(proc.stdout)


def qemu_size(path, fmt):
    """The virtual size qemu reports for ``path`` read as ``fmt``, or None
    when qemu cannot open it that way.
    """
    info = qemu_info(path, fmt)
    return None if info is None else info['virtual-size']


# Invariants

def verdict_problem(result):
    """Why a verdict breaks the engine's contract whatever the bytes were,
    or None: a refusal names its checks, a bug is never a verdict.
    """
    if not isinstance(result, inspection.Inspection):
        return 'not an Inspection: %r' % (result,)
    bad = [c for c in result.failures if not CHECK_NAME.match(c)]
    if bad:
        return 'unnamed failures %r' % bad
    bugs = sorted(BUG_CHECKS & set(result.failures))
    if bugs:
        return 'engine bug: %s' % '; '.join(
            '%s: %s' % (c, result.failures[c]) for c in bugs)
    if not result.safe and not result.failures:
        return 'refused without naming a check: %s' % result.describe()
    if result.safe and (not isinstance(result.virtual_size, int) or
                        result.virtual_size < 0 or
                        result.virtual_size % base.SECTOR):
        return 'safe with virtual size %r' % (result.virtual_size,)
    return None


# Real drivers

class ReadCounter:
    """Counts what ``os.pread`` is asked for while active (the seekable
    driver's only way to read).
    """

    def __init__(self):
        self.calls = 0
        self.requested = 0
        self.returned = 0
        self.largest = 0

    @contextlib.contextmanager
    def counting(self):
        real = os.pread

        def pread(fd, length, offset):
            self.calls += 1
            self.requested += length
            self.largest = max(self.largest, length)
            data = real(fd, length, offset)
            self.returned += len(data)
            return data

        os.pread = pread
        try:
            yield self
        finally:
            os.pread = real


def memfd(data):
    """An fd of a memory file holding ``data`` (closed by the caller)."""
    fd = os.memfd_create('image', os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return fd


def seekable_fd(fd, disk_format=None, policy=None, inspectors=None,
                counter=None):
    """The real seekable driver (``inspect_fd``) on an open fd."""
    if counter is None:
        return seekable_mod.inspect_fd(fd, disk_format, policy, inspectors)
    with counter.counting():
        return seekable_mod.inspect_fd(fd, disk_format, policy, inspectors)


def seekable(data, disk_format=None, policy=None, inspectors=None,
             counter=None):
    """The real seekable driver (``inspect_fd``) on ``data``."""
    fd = memfd(data)
    try:
        return seekable_fd(fd, disk_format, policy, inspectors, counter)
    finally:
        os.close(fd)


def fd_path(fd):
    """A path other processes (qemu-img) can open the fd by."""
    return '/proc/%d/fd/%d' % (os.getpid(), fd)


def streamed(data, chunk, disk_format=None, policy=None, inspectors=None):
    """The real streaming driver on ``data`` cut in ``chunk``-byte pieces
    (or a list of chunk sizes, cycled).
    """
    inspector = stream_mod.StreamInspector(disk_format, policy, inspectors)
    view = memoryview(data)
    sizes = [chunk] if isinstance(chunk, int) else list(chunk)
    pos = i = 0
    while pos < len(data):
        size = max(1, sizes[i % len(sizes)])
        inspector.feed(view[pos:pos + size])
        pos += size
        i += 1
    return inspector.finish()


def stream_file(path, cut, chunk, disk_format=None, policy=None):
    """``InspectingReader`` over the first ``cut`` bytes of ``path``."""
    def source():
        with open(path, 'rb') as f:
            left = cut
            while left:
                data = f.read(min(chunk, left))
                if not data:
                    return
                left -= len(data)
                yield data
    reader = glance_vsize.InspectingReader(source(), disk_format, policy)
    passed = sum(len(c) for c in reader)
    assert passed == cut
    return reader.result


@contextlib.contextmanager
def truncated_copy(path):
    """A sparse copy of ``path`` to truncate, in decreasing cuts."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, os.path.basename(path))
        subprocess.run(['cp', '--sparse=always', path, copy], check=True)
        yield copy


# Many cuts of one image

class CutInspector:
    """``inspect_fd`` on the first ``cut`` bytes of the file at ``fd``,
    for many cuts, reusing each probe while its answers stay the same.
    """

    def __init__(self, fd, inspectors=None, policy=None):
        self.fd = fd
        self.policy = policy or inspection.DEFAULT_POLICY
        self.inspectors = (registry.inspectors() if inspectors is None
                           else inspectors)
        # inspector -> (probe, [(request, answer key)])
        self.cache = {}
        self.runs = 0

    def _answer(self, request, cut):
        if isinstance(request, base.Read):
            end = min(request.offset + request.length, cut)
            if end <= request.offset:
                return b''
            return seekable_mod._pread(self.fd, end - request.offset,
                                       request.offset)
        if request is base.LENGTH:
            return cut
        start = max(0, cut - request.length)
        return seekable_mod._pread(self.fd, cut - start, start)

    def _key(self, request, answer, cut):
        """What decides the answer: for a Read of the same file, its
        length; for a Tail, its bytes; for LENGTH, the length.
        """
        if isinstance(request, base.Read):
            return len(answer)
        return answer

    def _still_valid(self, transcript, cut):
        for request, key in transcript:
            if isinstance(request, base.Read):
                end = min(request.offset + request.length, cut)
                if max(0, end - request.offset) != key:
                    return False
            elif request is base.LENGTH:
                if key != cut:
                    return False
            elif self._answer(request, cut) != key:
                return False
        return True

    def probe(self, inspector, cut):
        cached = self.cache.get(inspector)
        if cached is not None and self._still_valid(cached[1], cut):
            return cached[0]
        self.runs += 1
        started = engine.start([inspector], self.policy)
        probe, request = started[0]
        transcript = []
        while request is not None:
            answer = self._answer(request, cut)
            transcript.append((request, self._key(request, answer, cut)))
            request = engine.step(probe, answer)
        self.cache[inspector] = (probe, transcript)
        return probe

    def probes(self, cut):
        return [self.probe(i, cut) for i in self.inspectors]

    def verdict(self, cut, disk_format=None, probes=None):
        if probes is None:
            probes = self.probes(cut)
        return engine.decide(probes, disk_format, self.policy, cut)


def same_verdict(a, b):
    return a.as_dict() == b.as_dict()


def qemu_size_of(data, fmt):
    """:func:`qemu_size` of bytes held in memory (through a memfd)."""
    fd = memfd(data)
    try:
        return qemu_size(fd_path(fd), fmt)
    finally:
        os.close(fd)
