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


"""Paste filter: inspect image data as Glance streams it to the store.

Why a paste filter: the domain proxy chain that stores image data
(glance/gateway.py) is fixed and has no configuration hook, but the API
pipeline in glance-api-paste.ini is the deployer's.  A filter placed after
Glance's ``context`` filter sees the request body of
``PUT /v2/images/{id}/file`` (create-image) and ``PUT .../stage``
(glance-direct), can wrap ``wsgi.input`` so that Glance reads it through
:class:`glance_vsize.InspectingReader`, and after a successful upload can
set ``virtual_size`` through Glance's own image repository.

A refusal is raised from inside Glance's read of the body as
:exc:`Refused`, an exception that Glance's upload and stage handlers both
treat as invalid data (logged as an error with the refusal's message, no
traceback): they put the image back to ``queued``, and the store deletes
the partial file it was writing.  The rest of the request body is read
and discarded (never stored), so that the client receives the error
instead of a broken pipe.

One inspection per pass: while Glance handles ``PUT .../file``, the
filter's verdict is offered to :mod:`glance_vsize.glance.format_inspector`
(which :mod:`glance_vsize.glance.install` puts in place of oslo.utils'
inspector in Glance when this filter loads), so that Glance's own
``set_data`` records qemu-img's virtual_size from the filter's inspection
instead of inspecting the bytes a second time.

Images whose container_format is ``ova`` or ``compressed`` are inspected
inside (:mod:`glance_vsize.containers`); Glance inspects only bare ones,
so the virtual_size set here is the only one they get.  When Glance's
``image_decompression`` import plugin is enabled, a ``.../stage`` body is
inspected as what that plugin will leave staged: gzip data in a bare
container through gzip, zip and LHA archives not at all (the import
plugin inspects what they extract).
"""

import logging
import re

from glance.common import exception as glance_exception
from glance_store import exceptions as store_exceptions
from oslo_config import cfg
import webob
import webob.exc
import webob.request

import glance_vsize
from glance_vsize import conf as vsize_conf
from glance_vsize.glance import common
from glance_vsize.glance import format_inspector
from glance_vsize.glance import install
from glance_vsize.glance import locations

LOG = logging.getLogger(__name__)

_DATA_PATH = re.compile(
    r'^(?:/v2)?/images/([0-9a-fA-F-]{1,64})/(file|stage)/?$')
_DRAIN_CHUNK = 1 << 20
#: What the filter reads from the WSGI server at a time (see
#: _RefusingReader): at most this much of a request body is held.
_READ_BLOCK = 1 << 20


class Refused(glance_exception.InvalidImageData, store_exceptions.Invalid):
    """glance_vsize refuses the data being uploaded.

    Glance's handlers catch it as invalid data, without a traceback:
    ``upload`` (``PUT .../file``) as ``InvalidImageData`` (an error log of
    the message, the image back to ``queued``), ``stage`` as glance_store's
    ``Invalid`` (the same; Glance 2025.2 and later: 2025.1's stage logs any
    exception with its traceback).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _KnownLengthBody:
    """The request body as the engine pulls it, when its length is known.

    A body that ends before its Content-Length is a client that
    disconnected: this raises it as webob's ``DisconnectionError`` (what
    Glance gets from webob's own reader without glance_vsize) instead of
    handing the engine an early end, which would judge the cut image and
    could refuse it ("truncated", bad checksums) for what the network did.
    """

    def __init__(self, source, length):
        self.source = source
        self.left = length

    def read(self, size=-1):
        chunk = self.source.read(size)
        if not chunk and self.left > 0 and size != 0:
            raise webob.request.DisconnectionError(
                'The client disconnected while sending the body (%d more '
                'bytes were expected)' % self.left)
        self.left -= len(chunk)
        return chunk


class _Peeked:
    """A request body whose first bytes were read to look at them
    (:attr:`head`), read again from the start.
    """

    def __init__(self, source, length):
        self.source = source
        want = common.HEAD_SIZE if length is None else min(
            common.HEAD_SIZE, length)
        head = b''
        while len(head) < want:
            chunk = source.read(want - len(head))
            if not chunk:
                break
            head += chunk
        self.head = self._left = head

    def read(self, size=-1):
        if not self._left:
            return self.source.read(size)
        if size is None or size < 0:
            data, self._left = self._left + self.source.read(), b''
        else:
            data, self._left = self._left[:size], self._left[size:]
        return data


class _RefusingReader:
    """What Glance reads the body from: the engine's reader, read in
    blocks of :data:`_READ_BLOCK` bytes and handed out in the sizes Glance
    asks for (64 KiB); a refusal becomes the HTTP error Glance passes on.

    Every block is inspected before any of it is handed on, so that the
    store gets no byte of the block that makes the image unsafe.  Reading
    the WSGI server's input in large blocks also spares it work: gunicorn
    (27) copies what it holds buffered, up to 1 MiB, on every read, and a
    64 KiB read then costs it up to 16 times the bytes it returns.
    """

    def __init__(self, reader, image_id, declared):
        self.reader = reader
        self.image_id = image_id
        self.declared = declared
        self.refused = None
        self._block = b''
        self._at = 0

    def _refuse(self, exc):
        inspection = exc.inspection
        inspection.details.setdefault('declared', self.declared)
        self.refused = inspection
        self.message = message = common.refusal_message(self.image_id,
                                                        inspection)
        LOG.warning('%s (refused after %d bytes of the request body)',
                    message, self.reader.bytes_read)
        self.status = 415 if set(inspection.failures) == {
            'format_mismatch'} else 400
        raise Refused(message)

    def read(self, size=-1):
        if size == 0:
            return b''
        if size is None or size < 0:        # all that is left
            rest, self._block = self._block[self._at:], b''
            return rest + self._read(-1)
        if self._at < len(self._block):
            data = self._block[self._at:self._at + size]
            self._at += len(data)
            return data
        if size < _READ_BLOCK:
            self._block, self._at = self._read(_READ_BLOCK), 0
            return self.read(size) if self._block else b''
        return self._read(size)

    def _read(self, size):
        try:
            return self.reader.read(size)
        except glance_vsize.ImageRejected as exc:
            self._refuse(exc)

    def __iter__(self):
        while True:
            chunk = self.read(65536)
            if not chunk:
                return
            yield chunk

    def close(self):
        """Glance closes the body of chunked uploads; the source is the
        WSGI server's, which closes it itself.
        """

    def finish(self):
        try:
            return self.reader.finish()
        except glance_vsize.ImageRejected as exc:
            self._refuse(exc)


def _json_error(status, message):
    """The refusal as the JSON error body OpenStack clients display: 400,
    or 415 when the content only contradicts disk_format.
    """
    error = webob.exc.status_map[status]
    return webob.Response(
        status='%d %s' % (status, error.title),
        content_type='application/json', charset='UTF-8',
        json_body={'message': message, 'code': status,
                   'title': error.title})


class VirtualSizeMiddleware:
    """WSGI middleware; see the module docstring."""

    def __init__(self, app, conf=cfg.CONF):
        self.app = app
        self.conf = conf
        vsize_conf.register_opts(conf)
        install.install()

    def __call__(self, environ, start_response):
        handled = locations.dispatch(environ, start_response, self.app,
                                     self.conf)
        if handled is not None:         # a location added to an image
            return handled
        match = None
        method = environ.get('REQUEST_METHOD')
        if method == 'PUT':
            match = _DATA_PATH.match(environ.get('PATH_INFO', ''))
        if match is None:
            return self.app(environ, start_response)
        request = webob.Request(environ)
        image_id, action = match.groups()
        image = self._get_image(request, image_id)
        if image is None or not common.inspectable(image):
            return self.app(environ, start_response)

        raw_input = environ['wsgi.input']
        length = request.content_length
        container = image.container_format
        if action == 'stage' and common.decompressed_later(self.conf):
            raw_input = environ['wsgi.input'] = _Peeked(raw_input, length)
            container = common.staged_container(container, raw_input.head)
            if container is None:
                LOG.info('Image %s: the staged data is an archive that '
                         'image_decompression extracts at import; '
                         'glance_vsize inspects what it extracts then',
                         image_id)
                return self.app(environ, start_response)
        source = raw_input if length is None else _KnownLengthBody(
            raw_input, length)
        reader = _RefusingReader(
            glance_vsize.InspectingReader(
                source, image.disk_format, vsize_conf.policy(self.conf),
                fail_fast=True, expected_size=length,
                container_format=container),
            image_id, image.disk_format)
        environ['wsgi.input'] = reader
        current = format_inspector.InspectedPass(
            lambda: reader.reader.bytes_read,
            lambda: reader.reader.finish(check=False))
        with format_inspector.inspected_pass(current):
            response = request.get_response(self.app)
        if reader.refused is not None:
            self._drain(raw_input, length, reader.reader.bytes_read)
            response = _json_error(reader.status, reader.message)
        elif action == 'file' and response.status_int < 300 and (
                container != 'bare'
                or not install.installed()):
            # Glance inspects only bare containers (and this Glance may
            # not take our verdict): record it through its repository.
            self._set_virtual_size(request, image_id, reader)
        return response(environ, start_response)

    @staticmethod
    def _get_image(request, image_id):
        context = getattr(request, 'context', None)
        if context is None:
            LOG.warning('glance_vsize filter has no request context: place '
                        'it after the "context" filter in the pipeline')
            return None
        from glance import gateway
        try:
            return gateway.Gateway().get_repo(context).get(image_id)
        except Exception as exc:
            # Glance answers the request itself (404, 403...).
            LOG.debug('Image %s not inspected: %s', image_id, exc)
            return None

    def _drain(self, raw_input, length, already):
        """Read what the client still sends, storing nothing."""
        left = None if length is None else length - already
        cap = self.conf.image_size_cap if 'image_size_cap' in self.conf \
            else 1 << 40
        drained = 0
        while (left is None or left > 0) and drained < cap:
            want = _DRAIN_CHUNK if left is None else min(left, _DRAIN_CHUNK)
            try:
                chunk = raw_input.read(want)
            except Exception:
                return
            if not chunk:
                return
            drained += len(chunk)
            if left is not None:
                left -= len(chunk)

    @staticmethod
    def _set_virtual_size(request, image_id, reader):
        """Record the verdict's virtual_size on the stored image.  A
        failure is logged with the image ID; the upload, already stored
        and answered by Glance, keeps Glance's answer.
        """
        try:
            result = reader.reader.finish(check=False)
            if not result.safe:
                # Only possible when Glance stopped reading before the end
                # of a body of unknown length; the data was stored by then.
                LOG.error('Image %s was stored but glance_vsize refuses it: '
                          '%s', image_id, result.describe())
                return
            from glance import gateway
            repo = gateway.Gateway().get_repo(request.context)
            image = repo.get(image_id)
            if image.virtual_size != result.virtual_size:
                LOG.info('Image %s: virtual_size %s (%s), Glance said %s',
                         image_id, result.virtual_size, result.format,
                         image.virtual_size)
                image.virtual_size = result.virtual_size
                repo.save(image)
        except Exception:
            LOG.exception('Image %s was stored, but glance_vsize could not '
                          'record its virtual_size', image_id)


def filter_factory(global_conf, **local_conf):
    """Paste ``filter_factory``; see etc/glance-api-paste.ini.patch."""
    def _filter(app):
        return VirtualSizeMiddleware(app)
    return _filter
