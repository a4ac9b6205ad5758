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

"""Ranged reads of a Swift location (``swift://``, ``swift+http://``,
``swift+https://``, ``swift+config://``).

glance_store's swift driver refuses ``get(offset=...)`` (it lacks
``READ_RANDOM``), although it sends ``Range`` itself to resume a broken
download.  This asks for each region with python-swiftclient's
``get_object(container, obj, headers={'Range': 'bytes=A-B'})`` on a
connection from the driver's own connection manager
(``Store.get_manager``): the single-tenant store authenticates with the
location's (or ``swift_store_config_file``'s) user and key against
Keystone, the multi-tenant store uses the request's token on the
location's storage URL, both with ``swift_store_auth_insecure``,
``swift_store_cacert``, ``swift_store_region``,
``swift_store_service_type`` and ``swift_store_endpoint_type``, exactly
as its own ``get`` does.  An answer that is not a 206 for that range
raises :class:`~glance_vsize.glance.byte_ranges.NoRanges` before its
body is read.
"""

import contextlib
import http.client
import typing

from glance_vsize.glance import byte_ranges
from glance_vsize import ranged

#: Chunks of the body swiftclient hands over (the driver's CHUNKSIZE).
CHUNK = 65536


def is_swift(store) -> bool:
    """Whether ``store`` is glance_store's swift driver (single- or
    multi-tenant).
    """
    return ('swift' in store.get_schemes()
            and hasattr(store, 'get_manager'))


def is_multi_tenant(store) -> bool:
    """Whether ``store`` reads with the request's token
    (``swift_store_multi_tenant``).
    """
    from glance_store._drivers.swift import store as swift_store
    return isinstance(store, swift_store.MultiTenantStore)


def _read(body, length: int) -> bytes:
    out = bytearray()
    for chunk in body:
        out += chunk
        if len(out) >= length:
            break
    return bytes(out[:length])


@contextlib.contextmanager
def open_object(store, loc, context=None) -> typing.Iterator[
        ranged.ReadAt]:
    """``read_at`` of the Swift object at ``loc`` (a glance_store
    ``Location``), valid inside the ``with`` block.

    :param context: the request context (the multi-tenant store reads
        with its token).
    :raises: ``glance_store.exceptions.NotFound`` when the object does not
        exist; ``BadStoreConfiguration`` for a multi-tenant store without
        a request token (``glance-vsize backfill`` has none);
        swiftclient's and keystoneauth's errors otherwise.
    """
    from glance_store import exceptions
    import swiftclient

    spec = loc.store_location
    what = 'swift object %s/%s' % (spec.container, spec.obj)
    if is_multi_tenant(store) and not getattr(context, 'auth_token', None):
        raise exceptions.BadStoreConfiguration(
            store_name='swift', reason='%s is in a multi-tenant store, '
            'read with the token of a request: there is none here' % what)
    with store.get_manager(spec, context) as manager:
        def read_at(offset: int, length: int) -> bytes:
            answer: dict = {}
            try:
                headers, body = manager.get_connection().get_object(
                    spec.container, spec.obj, resp_chunk_size=CHUNK,
                    headers={'Range': byte_ranges.header(offset, length)},
                    response_dict=answer)
            except swiftclient.ClientException as exc:
                if exc.http_status == \
                        http.client.REQUESTED_RANGE_NOT_SATISFIABLE:
                    return b''   # at or past the end
                if exc.http_status == http.client.NOT_FOUND:
                    raise exceptions.NotFound('%s does not exist' % what)
                raise
            try:
                byte_ranges.check(what, answer.get('status', 0),
                                  headers.get('content-range'), offset)
                return _read(body, length)
            finally:
                close = getattr(body, 'close', None)
                if close is not None:
                    close()

        yield read_at
