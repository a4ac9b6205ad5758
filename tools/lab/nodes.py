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

"""Several Glance API nodes and the store they share.

Node 1 is the lab's Glance as before (``DIR/etc``, ``DIR/staging``,
``DIR/log``...); node K > 1 lives in ``DIR/nodeK`` with its own config
dir, staging and tasks directories, lock path and logs, as a separate
host would.  They share Keystone, the database and the stores.  With
more than one node each records its own URL as
``worker_self_reference_url``, so that an import call reaching a node
that did not stage the data is proxied to the node that did (Glance's
distributed import).

:func:`use_rbd` makes the RBD store of :mod:`lab.ceph` the default
backend, keeping the file stores for copy-image.
"""

import os
import socket
from typing import Optional

from .ini import iniget
from .ini import iniset_many

#: glance_store backend name of the RBD store.
RBD_BACKEND = 'ceph'


def node_dir(data: str, node: int) -> str:
    """State directory of API node ``node`` (1-based)."""
    return data if node == 1 else os.path.join(data, 'node%d' % node)


def free_port() -> int:
    """A port on 127.0.0.1 that the kernel says is free now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def bindable(port: int) -> bool:
    """Nothing is bound to 127.0.0.1:``port`` (gunicorn, or a Ceph monitor,
    can listen: a port in TIME_WAIT is free for them).
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(('127.0.0.1', port))
        except OSError:
            return False
    return True


def make_dirs(data: str, node: int) -> None:
    for name in ('etc', 'log', 'staging', 'tasks', 'locks'):
        os.makedirs(os.path.join(node_dir(data, node), name), exist_ok=True)


def configure(conf: str, data: str, node: int, port: int,
              nodes: int) -> None:
    """Edit node ``node``'s glance-api.conf (built for node 1) to its
    own directories and, with several nodes, its own URL.
    """
    d = lambda name: os.path.join(node_dir(data, node), name)  # noqa: E731
    settings = {
        'DEFAULT': {'log_file': d('log/glance-api.log')},
        'os_glance_staging_store': {'filesystem_store_datadir': d('staging')},
        'os_glance_tasks_store': {'filesystem_store_datadir': d('tasks')},
        'oslo_concurrency': {'lock_path': d('locks')},
    }
    if nodes > 1:
        settings['DEFAULT']['worker_self_reference_url'] = (
            'http://127.0.0.1:%d' % port)
    iniset_many(conf, settings)


def use_rbd(conf: str, backend: dict,
            default: Optional[str] = RBD_BACKEND) -> None:
    """Add the RBD backend ``RBD_BACKEND`` (glance_store settings
    ``backend``, :meth:`lab.ceph.Cluster.glance_backend`) in front of the
    lab's other backends, and make it the default.
    """
    others = iniget(conf, 'DEFAULT', 'enabled_backends')
    iniset_many(conf, {
        'DEFAULT': {'enabled_backends': '%s:rbd%s' % (
            RBD_BACKEND, ', ' + others if others else '')},
        'glance_store': {'default_backend': default},
        RBD_BACKEND: backend,
    })
