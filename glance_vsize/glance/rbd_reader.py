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

"""Ranged reads of an RBD location (``rbd://FSID/POOL/IMAGE/SNAP``).

glance_store's rbd driver refuses ``get(offset=...)`` (it lacks
``READ_RANDOM``), so this opens the image the way the driver's own
``get`` and ``get_size`` do: the store's rados connection
(``store.get_connection``: ``rbd_store_ceph_conf``, ``rbd_store_user``,
``rados_connect_timeout``), the location's pool (or
``rbd_store_pool``), the image read-only, on the location's snapshot
when it names one; and answers each region with
``rbd.Image.read(offset, length)``.
"""

import contextlib
import typing

from glance_vsize import ranged


def is_rbd(store) -> bool:
    """Whether ``store`` is glance_store's rbd driver (or one like it:
    an ``rbd`` scheme and the driver's connection settings).
    """
    return ('rbd' in store.get_schemes()
            and hasattr(store, 'get_connection')
            and hasattr(store, 'conf_file') and hasattr(store, 'user'))


@contextlib.contextmanager
def open_image(store, loc) -> typing.Iterator[
        typing.Tuple[ranged.ReadAt, int]]:
    """``(read_at, size)`` of the RBD image at ``loc`` (a glance_store
    ``Location``), valid inside the ``with`` block.

    :raises: ``glance_store.exceptions.NotFound`` when the image (or its
        snapshot) does not exist; the store's own connection errors.
    """
    from glance_store import exceptions
    import rbd

    spec = loc.store_location
    pool = spec.pool or store.pool
    with store.get_connection(conffile=store.conf_file,
                              rados_id=store.user) as conn:
        with conn.open_ioctx(pool) as ioctx:
            try:
                image = rbd.Image(ioctx, spec.image, snapshot=spec.snapshot,
                                  read_only=True)
            except rbd.ImageNotFound:
                raise exceptions.NotFound(
                    'RBD image %s does not exist' % spec.get_uri())
            with image:
                size = image.size()

                def read_at(offset: int, length: int) -> bytes:
                    # librbd refuses a read that starts past the end.
                    length = min(length, size - offset)
                    if length <= 0:
                        return b''
                    return image.read(offset, length)

                yield read_at, size
