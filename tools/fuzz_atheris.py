#!/usr/bin/env python3
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

"""Coverage-guided fuzzing of the engine with atheris (libFuzzer).

Run it through ``tools/fuzz --atheris [LIBFUZZER ARGS]``, which makes a
virtualenv with atheris (a manylinux wheel from PyPI; no compiler needed).
The engine is pure Python and needs nothing else.

The seed corpus (``build/fuzz-corpus``) is made once from
``tests/imagegen.py`` (qemu-img): the head of every image (its first
64 KiB, 3.2 MiB for VHDX whose metadata sits at 3 MiB) followed by its
last 1 KiB.  Each input is inspected by the seekable driver (a memfd) and
by the streaming driver (chunk sizes taken from the input's length); an
exception, an ``inspector_error``/``region_bounds``, an unnamed refusal,
or a stream accepted with another verdict than the seekable driver's is a
crash, saved by libFuzzer as ``crash-*``: turn it into a test in
``tests/hardening/test_regressions.py``.  With ``FUZZ_QEMU=1``, accepted
inputs are also checked with ``qemu-img info`` (slow).
"""

import os
import sys
import tempfile

import atheris

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
sys.path.insert(0, ROOT)

with atheris.instrument_imports(include=['glance_vsize']):
    from glance_vsize import inspection
    from glance_vsize import registry
    from glance_vsize import seekable
    from glance_vsize import stream
    registry.inspectors()       # imports the format modules, instrumented

from tests.hardening import support  # noqa: E402

CORPUS = os.path.join(ROOT, 'build', 'fuzz-corpus')
POLICY = support.ALL_FORMATS
QEMU = os.environ.get('FUZZ_QEMU') == '1'


def make_corpus():
    from tests import imagegen
    os.makedirs(CORPUS, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for entry in imagegen.build(tmp, huge=False):
            path = os.path.join(tmp, entry['file'])
            head = 3300 << 10 if entry['disk_format'] == 'vhdx' else 65536
            with open(path, 'rb') as f:
                data = f.read(head)
                size = os.fstat(f.fileno()).st_size
                if size > head:
                    f.seek(max(head, size - 1024))
                    data += f.read()
            with open(os.path.join(CORPUS, entry['file']), 'wb') as out:
                out.write(data)


def one_input(data):
    fd = support.memfd(data)
    try:
        result = seekable.inspect_fd(fd, None, POLICY)
        chunk = 1 + len(data) % 65536
        streamer = stream.StreamInspector(None, POLICY)
        for start in range(0, len(data), chunk):
            streamer.feed(data[start:start + chunk])
        streamed = streamer.finish()
        for verdict in (result, streamed):
            problem = support.verdict_problem(verdict)
            if problem:
                raise AssertionError(problem)
        if streamed.safe and (not result.safe or (
                streamed.format, streamed.virtual_size) != (
                result.format, result.virtual_size)):
            raise AssertionError('stream %s, seekable %s' % (
                streamed.describe(), result.describe()))
        if QEMU and result.safe:
            size = support.qemu_size(support.fd_path(fd), result.format)
            if size != result.virtual_size:
                raise AssertionError('%s, qemu-img says %s'
                                     % (result.describe(), size))
    finally:
        os.close(fd)
    assert isinstance(result, inspection.Inspection)


def main():
    if not os.path.isdir(CORPUS):
        make_corpus()
    args = sys.argv[:1] + [a for a in sys.argv[1:]]
    if not any(a.startswith('-max_len') for a in args):
        args.append('-max_len=%d' % (4 << 20))
    if not any(not a.startswith('-') for a in args[1:]):
        args.append(CORPUS)
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == '__main__':
    main()
