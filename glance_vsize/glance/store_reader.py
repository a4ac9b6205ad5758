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

"""Read a stored image by ranges through glance_store, for the ranged
driver (:mod:`glance_vsize.ranged`).

glance_store 5.x honours ``get(location, offset=..., chunk_size=...)``
only in stores with the ``READ_RANDOM`` capability: ``file`` and
``cinder``.  ``http``, ``rbd``, ``s3`` and ``swift`` raise
``StoreRandomGetNotSupported`` for an offset.  So, for an image not in
a container:

* a ``READ_RANDOM`` store: ranged reads through ``store.get``;
* the ``rbd`` store: ``rbd.Image.read`` on the image (or its snapshot)
  opened with the store's own connection settings
  (:mod:`glance_vsize.glance.rbd_reader`);
* the ``http`` store: HTTP ``Range`` requests (RFC 9110 14.2) with the
  store's own TLS and proxy settings;
* the ``s3`` store: ``get_object(Range=...)`` on the driver's own boto3
  client (:mod:`glance_vsize.glance.s3_reader`);
* the ``swift`` store: ``get_object(headers={'Range': ...})`` on a
  connection from the driver's own connection manager, single- or
  multi-tenant (:mod:`glance_vsize.glance.swift_reader`);
* any other store, and any image in a container: one streaming
  ``store.get`` from start to end, as Glance itself reads the image.

A server that answers a range with anything but a 206 for that range (a
200 with the whole body) is read as a stream instead.

The stores are Glance's own, created from the deployment's configuration
(:func:`load_stores`, as glance-api and glance-scrubber do).
"""

import contextlib
import logging
import typing

from glance_vsize.glance import byte_ranges
from glance_vsize.glance import rbd_reader
from glance_vsize.glance import releases
from glance_vsize.glance import s3_reader
from glance_vsize.glance import swift_reader
from glance_vsize import inspection
from glance_vsize import ranged

LOG = logging.getLogger(__name__)

#: Redirects followed for an http location (glance_store's MAX_REDIRECTS).
MAX_REDIRECTS = 5


#: The server does not serve byte ranges.
NoRanges = byte_ranges.NoRanges


def load_stores(conf) -> None:
    """Create Glance's stores from ``conf`` (parsed glance-api.conf), as
    ``glance.common.wsgi_app.init_app`` does.
    """
    import glance_store
    if conf.enabled_backends:
        glance_store.register_store_opts(conf)
        glance_store.create_multi_stores(conf)
    else:
        glance_store.register_opts(conf)
        glance_store.create_stores(conf)


def _scheme(url: str) -> str:
    return url.split('://', 1)[0].lower() if '://' in url else ''


def find_store(url: str, metadata: dict, conf):
    """``(store, location)`` for a location of an image."""
    from glance_store import location as gs_location
    if conf.enabled_backends:
        from glance_store import multi_backend
        backend = (metadata or {}).get('store')
        if backend is None:
            # A location recorded before multi-store: the first backend
            # whose driver reads its scheme.
            scheme = _scheme(url)
            for name in list(conf.enabled_backends):
                store = multi_backend.get_store_from_store_identifier(name)
                if scheme in store.get_schemes():
                    backend = name
                    break
            else:
                raise ValueError('no enabled backend reads %s locations'
                                 % scheme)
        store = multi_backend.get_store_from_store_identifier(backend)
        loc = gs_location.get_location_from_uri_and_backend(url, backend,
                                                            conf=conf)
        return store, loc
    from glance_store import backend as gs_backend
    store = gs_backend.get_store_from_uri(url)
    return store, gs_location.get_location_from_uri(url, conf=conf)


def _random_reader(store, loc, context) -> ranged.ReadAt:
    def read_at(offset: int, length: int) -> bytes:
        data, _size = store.get(loc, offset=offset, chunk_size=length,
                                context=context)
        try:
            return b''.join(data)
        finally:
            close = getattr(data, 'close', None)
            if close is not None:
                close()
    return read_at


class _HttpRanges:
    """Range requests on an http(s) location with the store's session
    settings (TLS verification, CA bundle, proxies).
    """

    def __init__(self, store, loc) -> None:
        import requests
        self.session = requests.Session()
        conf = _store_conf(store)
        ca_bundle = conf.https_ca_certificates_file
        self.session.verify = ca_bundle if ca_bundle else \
            not conf.https_insecure
        self.session.proxies = conf.http_proxy_information
        self.url = loc.get_store_uri()

    def read_at(self, offset: int, length: int) -> bytes:
        headers = {'Range': 'bytes=%d-%d' % (offset, offset + length - 1),
                   'Accept-Encoding': 'identity'}
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            resp = self.session.get(url, headers=headers, stream=True,
                                    allow_redirects=False, timeout=60)
            with contextlib.closing(resp):
                if resp.status_code in (301, 302, 303, 307, 308):
                    url = resp.headers['location']
                    continue
                if resp.status_code == 416:
                    return b''
                if resp.status_code != 200:
                    resp.raise_for_status()
                byte_ranges.check(self.url, resp.status_code,
                                  resp.headers.get('content-range'), offset)
                return resp.raw.read(length + 1, decode_content=False)
        raise IOError('%s: more than %d redirects' % (self.url,
                                                      MAX_REDIRECTS))

    def close(self) -> None:
        self.session.close()


@contextlib.contextmanager
def _http_ranges(store, loc, context) -> typing.Iterator[ranged.ReadAt]:
    reader = _HttpRanges(store, loc)
    try:
        yield reader.read_at
    finally:
        reader.close()


#: Readers by range requests: ``how()``'s answer -> a context manager
#: ``(store, loc, context)`` that yields ``read_at``.
RANGE_READERS: typing.Dict[str, typing.Callable[
    ..., typing.ContextManager[ranged.ReadAt]]] = {
    'http-range': _http_ranges,
    's3-range': lambda store, loc, context: s3_reader.open_object(store,
                                                                  loc),
    'swift-range': swift_reader.open_object,
}


def _store_conf(store):
    """The store's options, looked up as its own driver does: through
    glance_store's ``BackendGroupConfiguration`` (shared defaults beneath
    the backend's group), else, where glance_store has none (2025.1:
    :attr:`~glance_vsize.glance.releases.GlanceRelease.store_group_config`),
    the backend's group itself.
    """
    import glance_store
    if store.backend_group:
        if not releases.running().store_group_config:
            return getattr(store.conf, store.backend_group)
        return glance_store.driver.BackendGroupConfiguration(
            store.OPTIONS, store.backend_group, conf=store.conf)
    return store.conf.glance_store


def _streamed(store, loc, context) -> typing.Iterator[bytes]:
    data, _size = store.get(loc, context=context)
    try:
        for chunk in data:
            yield chunk
    finally:
        close = getattr(data, 'close', None)
        if close is not None:
            close()


def how(store) -> str:
    """How a store's images are read: ``offset``, ``rbd``,
    ``http-range``, ``s3-range``, ``swift-range`` or ``stream``.
    """
    from glance_store import capabilities
    if store.is_capable(capabilities.BitMasks.READ_RANDOM):
        return 'offset'
    if rbd_reader.is_rbd(store):
        return 'rbd'
    if 'http' in store.get_schemes():
        return 'http-range'
    if s3_reader.is_s3(store):
        return 's3-range'
    if swift_reader.is_swift(store):
        return 'swift-range'
    return 'stream'


def inspect_location(url: str, metadata: dict, length: int,
                     disk_format: typing.Optional[str],
                     container_format: typing.Optional[str],
                     policy: inspection.Policy, conf, context=None,
                     stream: bool = True) -> ranged.RangedInspection:
    """Inspect the image at one location of an image.

    :param length: the image's size (Glance's ``size``; the store's own
        size when Glance has none).
    :param stream: read the image from start to end when it cannot be
        read by ranges; else raise :class:`NoRanges`.
    :raises: the store's errors (not found, unreachable), and
        :class:`~glance_vsize.ranged.RangedReadError`.
    """
    store, loc = find_store(url, metadata, conf)
    mode = how(store)
    if mode == 'rbd':
        with rbd_reader.open_image(store, loc) as (read_at, size):
            return ranged.inspect_image(
                length or size, read_at=read_at, disk_format=disk_format,
                container_format=container_format, policy=policy)
    if not length:
        length = store.get_size(loc, context=context)
    bare = container_format in inspection.BARE_CONTAINERS
    if mode == 'offset':
        return ranged.inspect_image(
            length, read_at=_random_reader(store, loc, context),
            chunks=None if bare else _streamed(store, loc, context),
            disk_format=disk_format, container_format=container_format,
            policy=policy)
    if mode in RANGE_READERS and bare:
        try:
            with RANGE_READERS[mode](store, loc, context) as read_at:
                return ranged.inspect_ranged(read_at, length, disk_format,
                                             policy)
        except NoRanges as exc:
            if not stream:
                raise
            LOG.info('%s; reading it whole', exc)
    if not stream:
        raise NoRanges('%s images in a %s store cannot be read by ranges'
                       % (container_format, mode))
    return ranged.inspect_streamed(_streamed(store, loc, context),
                                   disk_format, policy, container_format)
