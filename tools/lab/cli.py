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

"""``tools/run-glance``: a real Glance API (any supported release) and a
real Keystone on 127.0.0.1, with glance_vsize (the options are in
:func:`parser`)."""

import argparse
import os
import subprocess
import sys

from . import releases
from . import REPO

DESCRIPTION = '''\
Run a REAL Glance API (gunicorn, Glance's keystone paste flavor and
keystonemiddleware) beside a REAL Keystone (sqlite, fernet tokens), both on
127.0.0.1, with glance_vsize enabled on both upload paths.  Development
and testing only.

DIR holds etc/ (Glance's config dir: the wheel's files + etc/*.patch + the
lab's settings, rewritten on every start), glance.sqlite, images/,
images-second/, staging/, tasks/, keystone/ (keystone.conf, its sqlite
database and key repositories), log/ and the openrc files: openrc (admin),
openrc-member (user demo, only the member role in project demo) and
openrc-service (service-user, the service role); with --store rbd, ceph/
(the Ceph cluster: ceph.conf, keyrings, daemons' data and logs); with
--rgw, ceph/rgw/ (the RADOS Gateway's keys, logs, glance-swift.conf); with
--nodes N, node2/ ... nodeN/ (each node's etc/, staging/, tasks/, log/);
with --database postgresql (the default with --nodes N > 1), postgres/
(a private PostgreSQL cluster: data/, postgresql.log, its unix socket and
lab.json with its port, password and URL).  A second start on the same
DIR keeps the databases, images, passwords, PostgreSQL and Ceph clusters.

Prints "PostgreSQL ready at URL" (with --database postgresql), "Keystone
ready at URL" and then "Glance API ready at URL" once they answer; stops
all it started (PostgreSQL and Ceph too) on SIGTERM or Ctrl-C.  While it
runs, in another shell:

  . DIR/openrc-member
  .venv/bin/openstack image create --disk-format qcow2 \\
      --container-format bare --file x.qcow2 name
  .venv/bin/openstack image create --import --disk-format qcow2 \\
      --container-format bare --file x.qcow2 name      # glance-direct

--release R runs OpenStack release R's Glance and Keystone (glance 30 and
keystone 27 for 2025.1, 31/28 for 2025.2, 32/29 for 2026.1, 33/30 for
2026.2), installed under R's upper-constraints (tools/constraints/R.txt)
into .venv-R (the newest, the default, into .venv) by
tools/setup-release-venv.  A DIR belongs to one release: its databases
are synced by that release.

Environment: RUN_GLANCE_PYTHON (python for the venv, default python3),
RUN_GLANCE_READY_TIMEOUT (seconds, default 120).'''


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError('port out of range: %s' % text)
    return port


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError('must be at least 1')
    return n


def _plugins(text: str) -> list:
    names = [n.strip() for n in text.split(',') if n.strip()]
    if not names or any(not n.replace('_', '').replace('-', '').isalnum()
                        for n in names):
        raise argparse.ArgumentTypeError(
            'comma-separated plugin names, got %r' % text)
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='tools/run-glance', description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--release', choices=list(releases.RELEASES),
                   default=releases.NEWEST,
                   help='the OpenStack release of Glance and Keystone '
                        '(default %s, the newest)' % releases.NEWEST)
    p.add_argument('--port', type=_port, default=9292,
                   help='Glance listens on 127.0.0.1:N (default 9292)')
    p.add_argument('--keystone-port', type=_port, default=None,
                   help='Keystone listens on 127.0.0.1:N (default: a free '
                        'port)')
    p.add_argument('--data-dir', default=os.path.join(REPO, '.glance-data'),
                   metavar='DIR', help='state directory (default: '
                                       '<repo>/.glance-data)')
    p.add_argument('--workers', type=_positive, default=1,
                   help="Glance's gunicorn worker processes (default 1); "
                        'each runs the import tasks of the import calls it '
                        'receives; staging/ is shared by all')
    p.add_argument('--database', metavar='URL|postgresql|sqlite',
                   help="Glance's database. sqlite: DIR/glance.sqlite "
                        '(WAL, busy timeout; the default with one node). '
                        'postgresql: a private PostgreSQL cluster under '
                        "DIR/postgres (Debian's postgresql, installed "
                        'when missing; 127.0.0.1 only, its own port and '
                        'password), started and stopped with the lab; the '
                        'default with --nodes N > 1, since several nodes '
                        'cannot share one sqlite file safely.  Otherwise '
                        'the SQLAlchemy URL of an existing server: '
                        'postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB '
                        '(psycopg2-binary is installed when missing)')
    p.add_argument('--import-plugins', type=_plugins,
                   default=['glance_vsize'], metavar='LIST',
                   help='image_import_plugins, comma-separated (default '
                        'glance_vsize), e.g. image_decompression,'
                        'glance_vsize')
    p.add_argument('--store', choices=('file', 'rbd'), default='file',
                   help="Glance's default store (default file). rbd: a "
                        'single-node Ceph cluster (Debian packages, '
                        'installed when missing) under DIR/ceph, started '
                        'and stopped with the lab; the file stores stay '
                        'for copy-image')
    p.add_argument('--rgw', action='store_true',
                   help="Ceph's RADOS Gateway (Debian's radosgw) on the "
                        "lab's Ceph cluster (DIR/ceph, started as for "
                        '--store rbd) and two more Glance backends on it: '
                        's3 (S3 API) and swift (Swift API, Keystone '
                        'tokens); --store stays the default backend')
    p.add_argument('--ceph-port', type=_port, default=None,
                   help="the Ceph monitor's port with --store rbd "
                        '(default: the one DIR/ceph/ceph.conf names, else '
                        'a free port)')
    p.add_argument('--nodes', type=_positive, default=1,
                   help='Glance API nodes on ports N..N+NODES-1 (default '
                        '1), each its own gunicorn, config dir, staging '
                        'directory and worker_self_reference_url '
                        '(DIR/nodeK for K > 1), sharing Keystone, the '
                        'database (PostgreSQL unless --database says '
                        'otherwise) and the stores; openrc names node 1')
    p.add_argument('--debug', action='store_true',
                   help='Glance and Keystone debug logging')
    p.add_argument('--iniset', nargs=3, action='append', default=[],
                   metavar=('SECTION', 'KEY', 'VALUE'),
                   help="set KEY = VALUE in [SECTION] of every node's "
                        'glance-api.conf, after the lab\'s own settings '
                        '(repeatable), e.g. --iniset DEFAULT '
                        'show_multiple_locations True')
    p.add_argument('--no-vsize', action='store_true',
                   help="the same lab WITHOUT glance_vsize: the wheel's "
                        'files without etc/*.patch, no import plugin '
                        '(tools/benchmark.py compares with it)')
    return p


def parse(argv=None) -> argparse.Namespace:
    """The options, checked, with the database each run uses: sqlite for
    one node, the lab's PostgreSQL for several unless --database says
    otherwise.
    """
    p = parser()
    args = p.parse_args(argv)
    if args.port + args.nodes - 1 > 65535:
        p.error('--port %d with --nodes %d: ports beyond 65535'
                % (args.port, args.nodes))
    if args.database is None:
        args.database = 'postgresql' if args.nodes > 1 else 'sqlite'
    elif args.database not in ('sqlite', 'postgresql') and \
            '://' not in args.database:
        p.error('--database: sqlite, postgresql or a SQLAlchemy URL, got %r'
                % args.database)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    # Imported here: --help works without the virtualenv.
    from . import runner
    try:
        return runner.Lab(args).run()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        print('run-glance: %s' % e, file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
