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

"""An HTTP server in a thread of the test process, serving the test
images to Glance's web-download; bound as ``[glance_vsize]`` says."""

import atexit
import functools
import http.server
import socket
import threading
from typing import Optional

from oslo_log import log as logging
from tempest import config

CONF = config.CONF
LOG = logging.getLogger(__name__)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (stdlib signature)
        LOG.debug('image server: %s - %s', self.address_string(),
                  format % args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


_lock = threading.Lock()
_server: Optional[_Server] = None
_base_url = ''


def _stop() -> None:
    if _server is not None:
        _server.shutdown()
        _server.server_close()


def serve(directory: str) -> str:
    """Start the server once per process; return its base URL."""
    global _server, _base_url
    with _lock:
        if _server is None:
            host = CONF.glance_vsize.http_bind_host
            handler = functools.partial(_Handler, directory=directory)
            server_cls = _Server
            if ':' in host:
                server_cls = type('_Server6', (_Server,),
                                  {'address_family': socket.AF_INET6})
            server = server_cls((host, CONF.glance_vsize.http_bind_port),
                                handler)
            threading.Thread(target=server.serve_forever, daemon=True,
                             name='glance-vsize-image-server').start()
            atexit.register(_stop)
            url_host = CONF.glance_vsize.http_url_host or host
            if ':' in url_host:
                url_host = '[%s]' % url_host
            _server = server
            _base_url = 'http://%s:%d' % (url_host, server.server_address[1])
            LOG.info('Serving %s at %s for web-download', directory,
                     _base_url)
        return _base_url
