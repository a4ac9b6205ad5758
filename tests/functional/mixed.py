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


"""32 concurrent mixed uploads from the corpus: the plan, one client's
job and the verdict, shared by test_concurrency.py (two workers) and
test_rbd.py (two API nodes).

Half the clients create-image (PUT .../file), half import (PUT .../stage,
POST .../import), a quarter of them with unsafe images.  Every safe image
must end ``active`` with qemu-img's virtual size, every unsafe one must be
refused on upload or stage and stay ``queued`` without a virtual size.
"""

import collections
import os

CLIENTS = 32
UNSAFE = CLIENTS // 4
#: Wall-clock bound of the whole concurrent run, in seconds.
DEADLINE = 300
GLANCE_FORMATS = ('raw', 'iso', 'qcow2', 'vmdk', 'vhd', 'vhdx', 'vdi',
                  'ploop')
#: Round-robin order of formats; those oslo.utils sizes wrongly first
#: (VHD, hybrid ISO), so that Glance's set_data must take our verdict.
FORMAT_ORDER = ('vhd', 'iso', 'qcow2', 'vmdk', 'vhdx', 'vdi', 'ploop', 'raw')
#: Images picked first within their format.
PREFERRED = ('vhd-dynamic-forceoff-s1.vhd', 'data-vhd-fixed.vhd',
             'hybrid.iso')
MAX_FILE = 32 << 20


def _rank(entry):
    name = entry['file']
    return (name not in PREFERRED, not name.startswith('data-'), name)


def plan(outdir, entries):
    """32 jobs ``(method, path, entry)``: 12 safe images each uploaded both
    ways, and 8 unsafe ones, 4 per way.
    """
    groups = collections.defaultdict(list)
    for e in entries:
        size = os.path.getsize(os.path.join(outdir, e['file']))
        if (e['safe'] and e['disk_format'] in GLANCE_FORMATS
                and not e['file'].startswith('qcow2-l2ext')
                and size <= MAX_FILE):
            groups[e['disk_format']].append(e)
    for group in groups.values():
        group.sort(key=_rank)
    safe = []
    while len(safe) < (CLIENTS - UNSAFE) // 2:
        took = False
        for fmt in FORMAT_ORDER:
            if groups[fmt] and len(safe) < (CLIENTS - UNSAFE) // 2:
                safe.append(groups[fmt].pop(0))
                took = True
        assert took, 'not enough safe images in the corpus'
    unsafe = sorted((e for e in entries if not e['safe']),
                    key=lambda e: (not e['file'].startswith('unsafe-'),
                                   e['file']))[:UNSAFE]
    assert len(unsafe) == UNSAFE
    jobs = []
    for e in safe:
        jobs.append(('file', e))
        jobs.append(('import', e))
    for i, e in enumerate(unsafe):
        jobs.append(('file' if i % 2 else 'import', e))
    return [(m, os.path.join(outdir, e['file']), e) for m, e in jobs]


class Outcome:
    def __init__(self, method, entry):
        self.method, self.entry = method, entry
        self.image_id = None
        self.status = None      # HTTP status of the upload or stage
        self.body = b''
        self.import_status = None
        self.image = None
        self.error = None

    def __repr__(self):
        image = self.image or {}
        return '%s %s %s: %s %s %s/%s %s' % (
            self.method, self.entry['file'], self.image_id, self.status,
            self.body[:300], image.get('status'), image.get('virtual_size'),
            self.error or '')


def run_job(up, down, start, method, path, entry, timeout):
    """One client: create the image and upload or stage it through
    ``up`` (after the barrier ``start``), import it and wait for it
    through ``down`` (the same Glance, or another node).
    """
    out = Outcome(method, entry)
    try:
        fmt = entry['disk_format']
        out.image_id = up.create(fmt if fmt in GLANCE_FORMATS else 'raw')
        start.wait(60)
        out.status, out.body = up.upload(
            out.image_id, path, 'file' if method == 'file' else 'stage')
        if method == 'import' and out.status == 204:
            out.import_status, body = down.import_(out.image_id)
            assert out.import_status == 202, body
        out.image = down.wait(out.image_id, timeout=timeout)
    except Exception as exc:
        out.error = repr(exc)
    return out


def wrong(outcomes, stores=None):
    """The outcomes that are not what the user relies on; with
    ``stores``, a safe image must be in exactly those stores.
    """
    misses = []
    for out in outcomes:
        image = out.image or {}
        if out.error:
            misses.append(out)
        elif out.entry['safe']:
            if ((out.status, image.get('status'), image.get('virtual_size'))
                    != (204, 'active', out.entry['virtual_size'])
                    or stores is not None and image.get('stores') != stores):
                misses.append(out)
        elif (out.status not in (400, 415)
              or b'refused by glance_vsize' not in out.body
              or image.get('status') != 'queued'
              or image.get('virtual_size') is not None):
            misses.append(out)
    return misses
