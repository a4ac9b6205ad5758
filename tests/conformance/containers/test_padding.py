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


"""What may follow a member of compressed data: another member, and the
padding each tool accepts (gzip: zero bytes at the end; xz: Stream Padding,
.xz File Format 2.2; zstd: skippable frames, RFC 8878 3.1.2).  The tools
themselves (``TOOL -t``) are the oracle.
"""

import subprocess

import pytest

from glance_vsize import inspection
from tests.conformance import containers as common
from tests.conformance.containers.test_compressed import TOOLS
from tests import containergen
from tests import imagegen


SMALL = 4 << 20


@pytest.fixture(scope='module')
def small_raw(tmp_path_factory):
    out = tmp_path_factory.mktemp('small')
    return imagegen.payload(str(out / 'small.raw'), SMALL, 11, mbr=True)


def _tool_accepts(tool, path):
    """The oracle: ``TOOL -t`` passes ``path`` without a word (exit status
    0, nothing on stderr).  ``gzip -t`` exits 2 on a warning, ``bzip2 -t``
    warns on stderr and exits 0: data a tool ignores is refused.
    """
    cmd = [tool, '-t'] + (['-q'] if tool == 'zstd' else []) + [str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode == 0 and not proc.stderr.strip()


def _parts(src, tool, tmp_path):
    """``src`` compressed by ``tool`` in two parts, split mid-sector."""
    data = open(src, 'rb').read()
    half = len(data) // 2 + 12345
    parts = []
    for i, piece in enumerate((data[:half], data[half:])):
        part = tmp_path / ('part%d' % i)
        part.write_bytes(piece)
        parts.append(open(containergen.compress(part, tool), 'rb').read())
    return parts


@pytest.mark.parametrize('tool', TOOLS)
def test_concatenated_members(small_raw, tmp_path, tool):
    """An image compressed in two parts, concatenated (RFC 1952 members,
    bzip2/xz streams, zstd frames): decompressed whole, as the tools do.
    """
    parts = _parts(small_raw, tool, tmp_path)
    path = tmp_path / 'joined'
    path.write_bytes(parts[0] + parts[1])
    assert _tool_accepts(tool, path)
    result = common.assert_inner(str(path), 'compressed', small_raw, 'raw')
    assert result.details['expanded_size'] == SMALL


SKIPPABLE = (0x184D2A5F).to_bytes(4, 'little') + (5).to_bytes(
    4, 'little') + b'skip!'

#: What follows the first part (then the second part, for 'between'):
#: ``(name, bytes, where refused after the first part)``.
PADDINGS = [
    ('zeros-1', bytes(1), 0), ('zeros-3', bytes(3), 0),
    ('zeros-4', bytes(4), 0), ('zeros-8', bytes(8), 0),
    ('zeros-4096', bytes(4096), 0), ('zeros-4097', bytes(4097), 0),
    ('zeros-4-between', bytes(4), 0), ('zeros-3-between', bytes(3), 0),
    ('zeros-4096-between', bytes(4096), 0),
    ('skippable', SKIPPABLE, 0), ('skippable-between', SKIPPABLE, 0),
    ('skippable-zeros-4', SKIPPABLE + bytes(4), len(SKIPPABLE)),
]

#: What ``TOOL -t`` passes (gzip 1.12, bzip2 1.0.8, xz 5.4, zstd 1.5),
#: checked against the tool itself.
TOOL_ACCEPTS = {
    'gzip': {'zeros-1', 'zeros-3', 'zeros-4', 'zeros-8', 'zeros-4096',
             'zeros-4097'},
    'bzip2': set(),
    'xz': {'zeros-4', 'zeros-8', 'zeros-4096', 'zeros-4-between',
           'zeros-4096-between'},
    'zstd': {'skippable', 'skippable-between'},
}


@pytest.mark.parametrize('tool', TOOLS)
@pytest.mark.parametrize('name,padding,where', PADDINGS,
                         ids=[p[0] for p in PADDINGS])
def test_padding_is_what_the_tool_accepts(small_raw, tmp_path, tool, name,
                                          padding, where):
    """Zero bytes and zstd skippable frames after a member, at the end or
    between two: accepted where ``TOOL -t`` passes them (gzip: zeros at
    the end; xz: Stream Padding, a multiple of four zero bytes, .xz File
    Format 2.2; zstd: skippable frames, RFC 8878 3.1.2), else refused as
    ``trailing_data`` at the offset where the tool stops.
    """
    first, second = _parts(small_raw, tool, tmp_path)
    if not name.endswith('-between'):
        first += second
        second = b''
    path = tmp_path / 'padded'
    path.write_bytes(first + padding + second)
    accepted = _tool_accepts(tool, path)
    assert accepted == (name in TOOL_ACCEPTS[tool]), \
        '%s -t changed its verdict on %s' % (tool, name)
    if accepted:
        result = common.assert_inner(str(path), 'compressed', small_raw,
                                     'raw')
        assert result.details['expanded_size'] == SMALL
    else:
        offset = len(first) + (where if tool == 'zstd' else 0)
        common.assert_refused(str(path), 'compressed', 'trailing_data',
                              text='offset %d' % offset)


@pytest.mark.parametrize('tool', TOOLS)
def test_refused_padding_is_a_warning_when_nonfatal(small_raw, tmp_path,
                                                    tool):
    """With ``trailing_data`` nonfatal, the image before the padding is
    still inspected (and nothing after the padding).
    """
    data = open(containergen.compress(small_raw, tool,
                                      str(tmp_path / 'c')), 'rb').read()
    path = tmp_path / 'padded'
    path.write_bytes(data + bytes(3) + data)
    assert not _tool_accepts(tool, path)
    policy = inspection.Policy(nonfatal_checks=frozenset({'trailing_data'}))
    for mode, result in common.all_modes(str(path), 'compressed', 'raw',
                                         policy):
        assert result.safe, '%s: %s' % (mode, result.describe())
        assert result.virtual_size == SMALL, mode
        assert 'offset %d' % len(data) in result.warnings['trailing_data']
