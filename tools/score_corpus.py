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


"""Score the engine on a corpus described by a manifest.json.

Usage: score_corpus.py CORPUS_DIR [--format FMT] [--chunks 512,4103,...]

Every image is inspected in seekable mode and in streaming mode with each
chunk size; each answer is compared with the manifest's (qemu-img's)
virtual size and safety.  Prints one line per miss and a summary; exits 1
on any miss.
"""

import argparse
import json
import os
import sys

import glance_vsize

CHUNKS = (512, 4096 + 7, 65536, 1 << 20)


def chunked(path, size):
    with open(path, 'rb') as f:
        while True:
            data = f.read(size)
            if not data:
                return
            yield data


def verdicts(path, disk_format, chunks):
    yield 'seekable', glance_vsize.inspect_file(path, disk_format)
    for size in chunks:
        reader = glance_vsize.InspectingReader(chunked(path, size),
                                               disk_format)
        for _ in reader:
            pass
        yield 'stream/%d' % size, reader.result


def miss(entry, result):
    if entry['safe']:
        if not result.safe:
            return 'refused: %s' % result.describe()
        if result.virtual_size != entry['virtual_size']:
            return 'virtual size %s, qemu-img says %s' % (
                result.virtual_size, entry['virtual_size'])
        if result.format != entry['disk_format']:
            return 'format %s, expected %s' % (result.format,
                                               entry['disk_format'])
    elif result.safe:
        return 'accepted (%s) but unsafe: %s' % (result.describe(),
                                                 entry.get('why'))
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('corpus')
    parser.add_argument('--format', help='only this disk_format')
    parser.add_argument('--chunks', default=','.join(map(str, CHUNKS)))
    parser.add_argument('--no-declared', action='store_true',
                        help='inspect without passing disk_format')
    args = parser.parse_args(argv)
    chunks = [int(c) for c in args.chunks.split(',') if c]
    with open(os.path.join(args.corpus, 'manifest.json')) as f:
        manifest = json.load(f)
    total = misses = 0
    for entry in manifest:
        if args.format and entry['disk_format'] != args.format:
            continue
        path = os.path.join(args.corpus, entry['file'])
        declared = None if args.no_declared else entry['disk_format']
        for mode, result in verdicts(path, declared, chunks):
            total += 1
            why = miss(entry, result)
            if why:
                misses += 1
                print('MISS %s [%s]: %s' % (entry['file'], mode, why))
    print('corpus: %d passed, %d failed' % (total - misses, misses))
    return 1 if misses else 0


if __name__ == '__main__':
    sys.exit(main())
