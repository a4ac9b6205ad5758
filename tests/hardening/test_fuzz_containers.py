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

"""Property-based fuzzing of the container layers (``compressed``: gzip,
bzip2, xz, zstd; ``ova``: tar and OVF), seeded with containers the real
tools make (``tests/containergen.py``) around generated images.

Each example edits a seed (bytes of its first 4 KiB, of its last 512
bytes or anywhere, a truncation, bytes appended) and streams it through
the container inspector in drawn chunk sizes: a verdict naming its
checks must come out, never an exception, within the same read bounds
as bare images.  A compressed image called safe must decompress with the
reference decompressor (Python's gzip, bz2 and lzma, the zstd tool) to
bytes that qemu-img opens with the same size.

Same profiles as :mod:`test_fuzz` (``tools/fuzz --long`` for the long
run).
"""

import bz2
import gzip
import lzma
import os
import shutil
import subprocess
import zlib

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from glance_vsize import containers
from tests import containergen
from tests.hardening import support
from tests.hardening import test_fuzz

INNER = ('qcow2-v1.1-c64k-s0.qcow2', 'vmdk-streamOptimized-ide-s0.vmdk',
         'vhd-dynamic-forceoff-s0.vhd')


@pytest.fixture(scope='module')
def seeds(corpus, tmp_path_factory):
    """container_format -> [(name, bytes)]"""
    if not all(containergen.have(t) for t in containergen.TOOLS + ('tar',)):
        pytest.skip('gzip, bzip2, xz, zstd and tar are needed')
    tmp = tmp_path_factory.mktemp('containers')
    by_file = {e['file']: e for e in corpus[1]}
    found = {'compressed': [], 'ova': []}
    for name in INNER:
        src = str(tmp / name)
        shutil.copy(by_file[name]['path'], src)
        for tool in containergen.TOOLS:
            path = containergen.compress(src, tool)
            with open(path, 'rb') as f:
                found['compressed'].append((os.path.basename(path),
                                            f.read()))
    vmdk = INNER[1]
    path = containergen.ova(
        str(tmp / 'vm.ova'), str(tmp),
        [(vmdk, by_file[vmdk]['virtual_size'], containergen.VMDK_STREAM)])
    with open(path, 'rb') as f:
        found['ova'].append(('vm.ova', f.read()))
    return found


@st.composite
def edit(draw):
    kind = draw(st.sampled_from(('head', 'head', 'tail', 'anywhere',
                                 'truncate', 'append')))
    if kind == 'append':
        return kind, draw(st.binary(min_size=1, max_size=1024))
    if kind == 'truncate':
        return kind, draw(st.integers(0, 1 << 24))
    return kind, draw(st.integers(0, 1 << 24)), draw(
        st.binary(min_size=1, max_size=8))


def recipes(seeds, container):
    return st.tuples(
        st.integers(0, len(seeds[container]) - 1),
        st.lists(edit(), min_size=1, max_size=3),
        st.lists(st.integers(1, 1 << 17), max_size=3).map(
            lambda sizes: sizes + [65536]))


def build(image, edits):
    data = bytearray(image)
    for kind, *args in edits:
        size = len(data)
        if kind == 'append':
            data += args[0]
        elif kind == 'truncate':
            del data[args[0] % (size + 1):]
        elif size:
            at, new = args
            if kind == 'head':
                at %= min(size, 4096)
            elif kind == 'tail':
                at = max(0, size - 1 - at % 512)
            else:
                at %= size
            data[at:at + len(new)] = new
    return bytes(data)


def _decompress(data):
    try:
        if data[:2] == b'\x1f\x8b':
            return gzip.decompress(data)
        if data[:3] == b'BZh':
            return bz2.decompress(data)
        if data[:6] == b'\xfd7zXZ\0':
            return lzma.decompress(data)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error):
        return None
    if data[:4] == b'\x28\xb5\x2f\xfd':
        proc = subprocess.run(['zstd', '-dcq'], input=data,
                              capture_output=True)
        return None if proc.returncode else proc.stdout
    return None


def reference_decompress(data):
    """What the usual decompressor makes of ``data``, or None.

    The container layer accepts only the zero padding that the tools
    accept (gzip: at the end; xz: Stream Padding, a multiple of 4 bytes;
    bzip2 and zstd: none), which the reference decompressors accept too.
    """
    return _decompress(data)


def check(container, data, chunks):
    inspector = containers.stream_inspector(container, None,
                                            support.ALL_FORMATS)
    view = memoryview(data)
    pos = i = 0
    while pos < len(data):
        size = chunks[i % len(chunks)]
        inspector.feed(view[pos:pos + size])
        pos += size
        i += 1
    result = inspector.finish()
    assert support.verdict_problem(result) is None, (
        support.verdict_problem(result))
    if result.safe and container == 'compressed':
        inner = reference_decompress(data)
        assert inner is not None, (
            'accepted (%s) a stream the reference decompressor rejects'
            % result.describe())
        assert support.qemu_size_of(inner, result.format) == \
            result.virtual_size, result.describe()
    return result


@pytest.mark.parametrize('container', ('compressed', 'ova'))
def test_fuzz_containers(seeds, container):
    @settings(test_fuzz.PROFILE)
    @given(recipes(seeds, container))
    def run(recipe):
        seed, edits, chunks = recipe
        image = seeds[container][seed][1]
        check(container, build(image, edits), chunks)

    run()


def test_the_container_seeds_pass(seeds):
    for container, pools in seeds.items():
        for name, image in pools:
            result = check(container, image, [65536])
            assert result.safe, (name, result.describe())
