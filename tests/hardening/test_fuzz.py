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

"""Property-based fuzzing of every inspector with hypothesis, seeded from
the generated corpus.

Each example is a seed image of one format with a few edits drawn by
hypothesis: a header field (from :mod:`tests.hardening.fields`) set to a
drawn value (checksums recomputed or not), bytes overwritten in the first
64 KiB or the last 512 bytes, a truncation, bytes appended, or another
image's head spliced in.  Every example runs through the real seekable
driver and the real streaming driver (drawn chunk sizes), and must:

* give a verdict, never an exception, an ``inspector_error`` or a
  ``region_bounds`` (a format that forgot its own bound);
* name the checks of a refusal;
* stay within the read bounds of :mod:`test_mutation`;
* be accepted in streaming mode only if seekable mode accepts it with the
  same format and size;
* when accepted, be opened by ``qemu-img info -f FORMAT`` with the same
  virtual size.

The short run (the test command) makes ``SHORT_EXAMPLES`` examples per
format, derandomized so that it is the same on every run.  The long run
is one command, ``tools/fuzz --long`` (``HYPOTHESIS_PROFILE=long``):
``LONG_EXAMPLES`` examples per format (or ``HYPOTHESIS_EXAMPLES``), random,
with hypothesis' example database in ``.hypothesis/``.  A failure found
becomes a test in ``test_regressions.py``.
"""

import os
import random

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from glance_vsize.formats import base
from tests.hardening import fields
from tests.hardening import support
from tests.hardening import test_mutation

SHORT_EXAMPLES = 60
LONG_EXAMPLES = int(os.environ.get('HYPOTHESIS_EXAMPLES', 5000))

_COMMON = dict(
    deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example,
                           HealthCheck.function_scoped_fixture])
settings.register_profile('hardening-short', max_examples=SHORT_EXAMPLES,
                          derandomize=True, database=None, **_COMMON)
settings.register_profile('long', max_examples=LONG_EXAMPLES, **_COMMON)
PROFILE = settings.get_profile('long' if support.long_run()
                               else 'hardening-short')

#: Seed images per format (files of the generated corpus).
SEEDS = {
    'qcow2': ('qcow2-v0.10-c64k-s1.qcow2', 'qcow2-v1.1-c512-s1.qcow2',
              'qcow2-zstd-s0.qcow2', 'qcow2-l2ext-s1.qcow2',
              'qcow2-luks.qcow2', 'unsafe-qcow2-backing.qcow2',
              'unsafe-qcow2-datafile.qcow2'),
    'qed': ('qed-s1.qed', 'unsafe-qed-backing.qed'),
    'vmdk': ('vmdk-monolithicSparse-ide-s1.vmdk',
             'vmdk-streamOptimized-lsilogic-s1.vmdk', 'vmdk-compat6-s0.vmdk',
             'unsafe-vmdk-monolithicFlat.vmdk'),
    'vhd': ('vhd-dynamic-forceoff-s1.vhd', 'vhd-dynamic-forceon-s0.vhd',
            'vhd-fixed-forceoff-s0.vhd', 'data-vhd-default.vhd'),
    'vhdx': ('vhdx-b32M-s1.vhdx', 'vhdx-fixed.vhdx'),
    'vdi': ('vdi-s1.vdi', 'vdi-static.vdi'),
    'ploop': ('ploop-s1.ploop', 'ploop-c64k.ploop'),
    'luks': ('luks.luks',),
    'raw': ('raw-gpt.raw', 'raw-mbr.raw', 'hybrid.iso', 'plain.iso',
            'raw-odd.raw'),
}


@pytest.fixture(scope='module')
def seeds(corpus):
    """format -> [(file, bytes, fields)]"""
    by_file = {e['file']: e for e in corpus[1]}
    loaded = {}
    for fmt, names in SEEDS.items():
        loaded[fmt] = []
        for name in names:
            entry = by_file[name]
            with open(entry['path'], 'rb') as f:
                image = f.read()
            kind = 'raw' if fmt == 'raw' else entry['disk_format']
            loaded[fmt].append((name, image, fields.fields_of(kind, image)))
    return loaded


#: Field values hypothesis starts from (besides any value of the field).
SPECIAL = (0, 1, 2, 0x200, 0x10000, 1 << 20, 1 << 31, 1 << 32, 1 << 40)


@st.composite
def edit(draw, loaded, fmt):
    """One edit, as a small tuple (so that a failing example prints)."""
    kind = draw(st.sampled_from(('field', 'field', 'field', 'head', 'tail',
                                 'truncate', 'append', 'splice')))
    if kind == 'field':
        return kind, draw(st.integers(0, 1 << 16)), draw(st.one_of(
            st.sampled_from(SPECIAL), st.integers(0, (1 << 64) - 1),
            st.just(-1), st.binary(max_size=64)))
    if kind == 'head':
        return kind, draw(st.integers(0, 65535)), draw(
            st.binary(min_size=1, max_size=16))
    if kind == 'tail':
        return kind, draw(st.integers(1, 512)), draw(
            st.binary(min_size=1, max_size=8))
    if kind == 'truncate':
        return kind, draw(st.integers(0, 1 << 24))
    if kind == 'append':
        return kind, draw(st.binary(min_size=1, max_size=4096))
    pools = [p for fmt_pools in loaded.values() for p in fmt_pools]
    return kind, draw(st.integers(0, len(pools) - 1)), draw(
        st.sampled_from((72, 512, 1536, 4096)))


def recipes(loaded, fmt):
    """(seed index, edits, chunk sizes): the chunk sizes are cycled, with
    64 KiB among them so that a stream of 1-byte chunks stays rare.
    """
    return st.tuples(
        st.integers(0, len(loaded[fmt]) - 1),
        st.lists(edit(loaded, fmt), min_size=1, max_size=4),
        st.lists(st.integers(1, 1 << 17), min_size=0, max_size=3).map(
            lambda sizes: sizes + [65536]))


def build(loaded, fmt, seed, edits):
    """The bytes a recipe describes."""
    _name, image, listed = loaded[fmt][seed % len(loaded[fmt])]
    pools = [p for fmt_pools in loaded.values() for p in fmt_pools]
    data = bytearray(image)
    for kind, *args in edits:
        size = len(data)
        if kind == 'field':
            usable = [f for f in listed if f.offset + f.size <= size]
            if not usable:
                continue
            field = usable[args[0] % len(usable)]
            value = args[1]
            if field.code == 's':
                value = bytes(value if isinstance(value, bytes) else b'')
                value = value.ljust(field.size, b'\0')[:field.size]
            else:
                top = (1 << (8 * field.size)) - 1
                if isinstance(value, bytes):
                    value = int.from_bytes(value[:field.size] or b'\0',
                                           'little')
                value = top if value == -1 else value & top
            data = fields.mutate(data, field, value)
        elif kind == 'head':
            at, new = args
            at = at % max(1, min(size, 65536))
            data[at:at + len(new)] = new
        elif kind == 'tail' and size:
            back, new = args
            at = max(0, size - back)
            data[at:at + len(new)] = new
        elif kind == 'truncate':
            del data[args[0] % (size + 1):]
        elif kind == 'append':
            data += args[0]
        elif kind == 'splice':
            index, length = args
            data[:length] = pools[index][1][:length]
    return bytes(data)


def check(data, chunks):
    """The properties of one example; returns the seekable verdict."""
    counter = support.ReadCounter()
    result = support.seekable(data, None, support.ALL_FORMATS,
                              counter=counter)
    streamed = support.streamed(data, chunks, None, support.ALL_FORMATS)
    assert support.verdict_problem(result) is None, (
        support.verdict_problem(result))
    assert support.verdict_problem(streamed) is None, (
        support.verdict_problem(streamed))
    assert counter.largest <= base.MAX_REGION
    assert counter.requested <= test_mutation.READ_BOUND
    assert counter.calls <= test_mutation.MAX_READS
    if streamed.safe:
        assert result.safe and (streamed.format, streamed.virtual_size) == (
            result.format, result.virtual_size), (
            streamed.describe(), result.describe())
    if result.safe:
        assert support.qemu_size_of(data, result.format) == \
            result.virtual_size, result.describe()
    return result


@pytest.mark.parametrize('fmt', sorted(SEEDS))
def test_fuzz_inspectors(seeds, fmt):
    @settings(PROFILE)
    @given(recipes(seeds, fmt))
    def run(recipe):
        seed, edits, chunks = recipe
        check(build(seeds, fmt, seed, edits), chunks)

    run()


def test_the_seeds_pass(seeds):
    """Unchanged seeds are the baseline: all pass the properties."""
    for pools in seeds.values():
        for _name, image, _fields in pools:
            check(image, [65536])


def test_fuzz_finds_a_planted_bug(seeds, monkeypatch):
    """The harness fails when an inspector crashes: a bug planted in the
    qcow2 inspector is found within the short run's examples.
    """
    from glance_vsize.formats import qcow2
    real = qcow2._check_size

    def planted(probe, size, *args):
        if size % 3 == 1:
            raise ZeroDivisionError('planted')
        return real(probe, size, *args)

    monkeypatch.setattr(qcow2, '_check_size', planted)
    rnd = random.Random(5)
    failures = 0
    _name, image, listed = seeds['qcow2'][0]
    size_field = next(f for f in listed if f.name == 'size')
    for _ in range(10):
        data = fields.mutate(image, size_field, rnd.randrange(1 << 40))
        try:
            check(bytes(data), [4096])
        except AssertionError:
            failures += 1
    assert failures
