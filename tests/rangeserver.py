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


"""A local HTTP file server on 127.0.0.1 for image locations, built on
the standard library's http.server, that serves single byte ranges
(RFC 9110 14.2) as web servers and object stores do, or ignores them
(``ranges=False``, as http.server itself does); it counts the bytes it
sends, and can hold the requests for a file until a test lets them go
(:meth:`RangeServer.hold`)."""

import functools
import http.server
import os
import re
import threading

_RANGE = re.compile(r'^bytes=(\d+)-(\d*)$')


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send_head(self):
        gate = self.server.gates.get(self.path.lstrip('/'))
        if gate is not None:
            gate.wait()
        spec = self.headers.get('Range')
        match = _RANGE.match(spec or '')
        if not self.server.ranges or match is None:
            self.server.requests.append(None)
            return super().send_head()
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return None
        size = os.path.getsize(path)
        first = int(match.group(1))
        last = min(int(match.group(2) or size - 1), size - 1)
        if first >= size:
            self.send_response(416)
            self.send_header('Content-Range', 'bytes */%d' % size)
            self.send_header('Content-Length', '0')
            self.end_headers()
            return None
        self.server.requests.append((first, last + 1 - first))
        f = open(path, 'rb')
        f.seek(first)
        self.send_response(206)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Range', 'bytes %d-%d/%d'
                         % (first, last, size))
        self.send_header('Content-Length', str(last + 1 - first))
        self.end_headers()
        self._left = last + 1 - first
        return f

    def copyfile(self, source, outputfile):
        left = getattr(self, '_left', None)
        while True:
            want = 65536 if left is None else min(65536, left)
            data = source.read(want) if want else b''
            if not data:
                return
            outputfile.write(data)
            self.server.sent += len(data)
            if left is not None:
                left -= len(data)


class Gate:
    """Requests for one file, held until :meth:`release`."""

    #: The longest a request is held, in seconds (a test that fails
    #: leaves no request hanging for longer).
    TIMEOUT = 120

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.waiting = 0

    def wait(self) -> None:
        with self._lock:
            self.waiting += 1
        self._event.wait(self.TIMEOUT)

    def release(self) -> None:
        self._event.set()


class RangeServer:
    """``with RangeServer(directory) as server: server.url('x.qcow2')``."""

    def __init__(self, directory, ranges=True):
        handler = functools.partial(_Handler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                     handler)
        self.httpd.ranges = ranges
        self.httpd.sent = 0
        self.httpd.requests = []
        self.httpd.gates = {}
        self._gates = []
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)

    @property
    def sent(self):
        """Bytes of image data sent so far."""
        return self.httpd.sent

    @property
    def requests(self):
        """``(offset, length)`` per range served; None for a whole file."""
        return self.httpd.requests

    def hold(self, name):
        """Hold every request for ``name`` from now on until the
        returned :class:`Gate` is released.
        """
        gate = self.httpd.gates[name] = Gate()
        self._gates.append(gate)
        return gate

    def let_through(self, name):
        """Requests for ``name`` from now on are served at once; those
        already held stay held until their gate is released.
        """
        self.httpd.gates.pop(name, None)

    def url(self, name):
        return 'http://127.0.0.1:%d/%s' % (self.httpd.server_port, name)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        for gate in self._gates:
            gate.release()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
