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

"""``glance-vsize backfill``: set the virtual size of images already in
Glance, by ranged reads from their stores.

``glance-vsize backfill --config-dir DIR [--dry-run] [--all] [--image ID
...] [--concurrency N] [--json]``

DIR holds the deployment's glance-api.conf (database, enabled_backends,
stores; ``[glance_vsize]`` options, also read from
glance-image-import.conf).  Exit status: 0 done, 3 when unsafe images
were found, 2 for usage or configuration errors.
"""

import argparse
import concurrent.futures
import json
import logging
import os
import sys
import time
import typing
import warnings

from glance_vsize.glance import backfill

if typing.TYPE_CHECKING:
    from oslo_config import cfg

MiB = 1 << 20
#: Exit status after Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130
CONFIG_FILES = ('glance-api.conf', 'glance-image-import.conf')
COLUMNS = (('id', 36), ('disk_format', 11), ('container_format', 16),
           ('old', 14), ('new', 14), ('bytes read', 10), ('verdict', 0))


class ConfigError(Exception):
    """The configuration directory cannot be used (exit status 2)."""


def add_parser(
        sub: 'argparse._SubParsersAction[typing.Any]'
) -> None:
    cmd = sub.add_parser(
        'backfill', help='set virtual_size on images already in Glance',
        description=(__doc__ or '').split('\n\n')[0])
    cmd.add_argument('--config-dir', required=True, metavar='DIR',
                     help="the directory of the deployment's "
                          'glance-api.conf')
    cmd.add_argument('--dry-run', action='store_true',
                     help='inspect and report, write nothing')
    cmd.add_argument('--all', action='store_true', dest='every',
                     help='every active image, not only those whose '
                          'virtual_size is null')
    cmd.add_argument('--image', action='append', default=[], metavar='ID',
                     help='only this image (repeatable)')
    cmd.add_argument('--concurrency', type=int, default=4, metavar='N',
                     help='images inspected at once (default 4)')
    cmd.add_argument('--json', action='store_true',
                     help='one JSON object per image per line')


def load_conf(config_dir: str) -> 'cfg.ConfigOpts':
    """Glance's configuration from ``config_dir``, as glance-api reads
    it; the stores created.
    """
    api_conf = os.path.join(config_dir, CONFIG_FILES[0])
    if not os.path.isfile(api_conf):
        raise ConfigError('%s: no such file' % api_conf)
    # Glance's modules register options (some on the command line) when
    # imported: import them before the configuration is parsed.
    from glance.common import config as glance_config
    import glance.context  # noqa: F401
    import glance.db  # noqa: F401
    from oslo_config import cfg

    from glance_vsize import conf as vsize_conf
    from glance_vsize.glance import store_reader
    conf = cfg.CONF
    files = [os.path.join(config_dir, name) for name in CONFIG_FILES
             if os.path.isfile(os.path.join(config_dir, name))]
    try:
        glance_config.set_config_defaults()
        conf([], project='glance', prog='glance-api',
             default_config_files=files)
        vsize_conf.register_opts(conf)
        store_reader.load_stores(conf)
    except Exception as exc:
        raise ConfigError('%s: %s' % (config_dir, exc))
    return conf


class Report:
    """Progress on a terminal, then a table; or JSON lines."""

    def __init__(self, as_json: bool, out: typing.TextIO,
                 err: typing.TextIO) -> None:
        self.as_json = as_json
        self.out, self.err = out, err
        self.tty = err.isatty()
        self.rows: typing.List[backfill.Outcome] = []
        self.started = time.monotonic()
        self.bytes_read = 0

    def add(self, outcome: backfill.Outcome) -> None:
        self.rows.append(outcome)
        self.bytes_read += outcome.bytes_read
        if self.as_json:
            json.dump(outcome.as_dict(), self.out, sort_keys=True)
            self.out.write('\n')
            self.out.flush()
        if self.tty:
            elapsed = max(time.monotonic() - self.started, 1e-6)
            self.err.write('\r%d images, %.1f MiB read, %.1f images/s '
                           % (len(self.rows), self.bytes_read / MiB,
                              len(self.rows) / elapsed))
            self.err.flush()

    def finish(self, order: typing.List[str], dry_run: bool) -> None:
        if self.tty:
            self.err.write('\n')
        if not self.as_json:
            rank = {image_id: i for i, image_id in enumerate(order)}
            self.rows.sort(key=lambda o: rank.get(o.id, len(rank)))
            self.out.write(_line(name for name, _ in COLUMNS))
            for row in self.rows:
                self.out.write(_line(_cells(row)))
        counts: typing.Dict[str, int] = {}
        for row in self.rows:
            counts[row.action] = counts.get(row.action, 0) + 1
        self.err.write('%d images: %s; %.1f MiB read%s\n' % (
            len(self.rows), ', '.join('%d %s' % (n, a) for a, n in
                                      sorted(counts.items())) or 'none',
            self.bytes_read / MiB,
            ' (dry run: nothing written)' if dry_run else ''))


def _line(cells: typing.Iterable[object]) -> str:
    return '  '.join(str(c).ljust(w) for c, (_, w) in
                     zip(cells, COLUMNS)).rstrip() + '\n'


def _cells(row: backfill.Outcome) -> typing.List[object]:
    if row.failures:
        verdict = '%s: %s' % (row.action, '; '.join(
            '%s: %s' % item for item in sorted(row.failures.items())))
    else:
        verdict = row.action
    return [row.id, row.disk_format or '-', row.container_format or '-',
            _size(row.old_virtual_size), _size(row.virtual_size),
            row.bytes_read, verdict]


def _size(value: typing.Optional[int]) -> str:
    return '-' if value is None else str(value)


def run(args: argparse.Namespace,
        out: typing.Optional[typing.TextIO] = None,
        err: typing.Optional[typing.TextIO] = None) -> int:
    """The ``backfill`` command; returns the exit status."""
    from glance_vsize.cmd import cli
    out, err = out or sys.stdout, err or sys.stderr
    if args.concurrency < 1:
        err.write('glance-vsize backfill: --concurrency must be at least '
                  '1\n')
        return cli.EXIT_ERROR
    logging.basicConfig(level=logging.WARNING, stream=err,
                        format='%(levelname)s %(name)s: %(message)s')
    # glance_store loads every store driver it knows; one whose library is
    # not installed (cinder without os-brick) is no concern here.
    logging.getLogger('stevedore.extension').setLevel(logging.CRITICAL)
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    try:
        conf = load_conf(args.config_dir)
        from glance_vsize import conf as vsize_conf
        policy = vsize_conf.policy(conf)
        catalogue = backfill.Catalogue(conf)
        ids = list(args.image) or list(catalogue.image_ids(args.every))
    except ConfigError as exc:
        err.write('glance-vsize backfill: %s\n' % exc)
        return cli.EXIT_ERROR
    except KeyboardInterrupt:
        err.write('glance-vsize backfill: interrupted before any image '
                  'was read\n')
        return EXIT_INTERRUPTED
    except Exception as exc:
        err.write('glance-vsize backfill: cannot read the catalogue: %s\n'
                  % exc)
        return cli.EXIT_ERROR
    every = args.every or bool(args.image)
    report = Report(args.json, out, err)
    pool = concurrent.futures.ThreadPoolExecutor(args.concurrency)
    pending: typing.Set[
        'concurrent.futures.Future[backfill.Outcome]'] = set()
    try:
        for image_id in ids:
            pending.add(pool.submit(backfill.backfill_one, catalogue,
                                    image_id, policy, args.dry_run, every))
            if len(pending) >= 2 * args.concurrency:
                done, pending = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    report.add(future.result())
        for future in concurrent.futures.as_completed(pending):
            report.add(future.result())
    except KeyboardInterrupt:
        pool.shutdown(wait=True, cancel_futures=True)
        for future in pending:
            if future.done() and not future.cancelled():
                report.add(future.result())
        report.finish(ids, args.dry_run)
        err.write('glance-vsize backfill: interrupted; run it again to '
                  'go on\n')
        return EXIT_INTERRUPTED
    pool.shutdown(wait=True)
    for image_id in catalogue.undone():
        err.write('glance-vsize backfill: image %s: its virtual_size was '
                  'written twice and undone twice by concurrent saves of '
                  'the image in Glance; run backfill again\n' % image_id)
    report.finish(ids, args.dry_run)
    unsafe = any(row.action == backfill.UNSAFE for row in report.rows)
    return cli.EXIT_REFUSED if unsafe else cli.EXIT_OK
