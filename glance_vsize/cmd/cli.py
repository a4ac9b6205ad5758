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


"""``glance-vsize``: inspect an image the way Glance with this plugin does.

``glance-vsize inspect [--disk-format FMT] [--container-format FMT]
[--json] PATH|-``

``glance-vsize backfill --config-dir DIR ...``: see
:mod:`glance_vsize.cmd.backfill`.

A path is inspected in seekable mode (a non-bare container is streamed
through from start to end); ``-`` reads standard input in streaming mode.
With ``--container-format ova`` or ``compressed`` the disk image inside
the archive or the compressed data is inspected.  Exit status: 0
recognised and safe, 3 refused (unsafe or not what ``--disk-format``
says), 2 usage or I/O error (one line on standard error).
"""

import argparse
from collections.abc import Sequence
import json
import sys
from typing import BinaryIO
from typing import NoReturn
from typing import TextIO

from glance_vsize.cmd import backfill
from glance_vsize import containers
from glance_vsize import inspection
from glance_vsize import registry
from glance_vsize import seekable
from glance_vsize import stream

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_REFUSED = 3

#: What a verdict's details say about a container, in display order.
CONTAINER_DETAILS = ('container', 'compression', 'expanded_size', 'disk',
                     'other_disks', 'ovf_capacity')


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, '%s: error: %s\n' % (self.prog, message))


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog='glance-vsize', description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    cmd = sub.add_parser('inspect', help='inspect one image')
    cmd.add_argument('path', help="the image file, or '-' for standard input")
    cmd.add_argument('--disk-format', choices=registry.disk_formats(),
                     help='the declared Glance disk_format to check against')
    cmd.add_argument('--container-format',
                     choices=containers.CONTAINER_FORMATS,
                     help='the Glance container_format: ova and compressed '
                          'are inspected inside (default: bare)')
    cmd.add_argument('--json', action='store_true',
                     help='print the verdict as one JSON object')
    cmd.add_argument('--vhd-size-rule', choices=inspection.VHD_SIZE_RULES,
                     default='qemu7',
                     help='how a VHD virtual size is derived (default: '
                          'qemu7, the rule of qemu 7.2)')
    cmd.add_argument('--allow-format', action='append', default=[],
                     metavar='FMT',
                     help='also accept this detected format (e.g. qed, '
                          'luks), which Glance has no disk_format for')
    backfill.add_parser(sub)
    return parser


def _print(result: inspection.Inspection, as_json: bool,
           out: TextIO) -> None:
    if as_json:
        verdict = {'format': result.format,
                   'virtual_size': result.virtual_size,
                   'safe': result.safe,
                   'failures': result.failures}
        if result.details.get('container'):
            verdict['container'] = {
                k: v for k, v in result.details.items()
                if k in CONTAINER_DETAILS}
        json.dump(verdict, out, sort_keys=True)
        out.write('\n')
        return
    fmt = result.format or 'unknown'
    if result.variant:
        fmt += ' (%s)' % result.variant
    out.write('format:       %s\n' % fmt)
    out.write('virtual size: %s\n' % result.virtual_size)
    if result.details.get('container'):
        facts = ', '.join('%s %s' % (k, result.details[k])
                          for k in CONTAINER_DETAILS[1:]
                          if k in result.details)
        if facts:
            facts = ' (%s)' % facts
        out.write('container:    %s%s\n'
                  % (result.details['container'], facts))
    out.write('safe:         %s\n' % ('yes' if result.safe else 'no'))
    for check, reason in sorted(result.failures.items()):
        out.write('refused:      %s: %s\n' % (check, reason))
    for check, reason in sorted(result.warnings.items()):
        out.write('warning:      %s: %s\n' % (check, reason))


def main(argv: Sequence[str] | None = None, stdin: BinaryIO | None = None,
         stdout: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    stdout = stdout or sys.stdout
    if args.command == 'backfill':
        return backfill.run(args, stdout)
    policy = inspection.Policy(
        vhd_size_rule=args.vhd_size_rule,
        allowed_formats=inspection.GLANCE_DISK_FORMATS | set(
            args.allow_format))
    try:
        if args.path == '-':
            source = (stdin or sys.stdin.buffer)
            reader = stream.InspectingReader(
                source, args.disk_format, policy,
                container_format=args.container_format)
            for _chunk in reader:
                pass
            result = reader.finish()
        else:
            result = seekable.inspect_file(
                args.path, args.disk_format, policy,
                container_format=args.container_format)
    except OSError as exc:
        sys.stderr.write('glance-vsize: %s: %s\n'
                         % (args.path, exc.strerror or exc))
        return EXIT_ERROR
    _print(result, args.json, stdout)
    return EXIT_OK if result.safe else EXIT_REFUSED


if __name__ == '__main__':
    sys.exit(main())
