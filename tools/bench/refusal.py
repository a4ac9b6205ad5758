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

"""Figure 4 of issue 5, the refusal: how many bytes of an unsafe upload
reach a real Glance's store before it is refused.
"""

import os
import re
import threading
import time

from .report import MiB
from .streams import filler_bytes
from .uploads import http_put


class StoreWatcher(threading.Thread):
    """Polls a store directory; records the largest file size seen."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.largest = 0
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                for entry in os.scandir(self.path):
                    try:
                        self.largest = max(self.largest,
                                           entry.stat().st_size)
                    except FileNotFoundError:
                        pass
            except FileNotFoundError:
                pass
            time.sleep(0.001)

    def stop(self):
        self.stopped.set()
        self.join()
        return self.largest


def unsafe_body(header, total, chunk=MiB):
    filler = filler_bytes(chunk)
    yield header
    left = total - len(header)
    while left > 0:
        yield filler[:min(chunk, left)]
        left -= chunk


def refused_upload(glance, header, total):
    """PUT an unsafe image; returns (status, bytes logged, store max)."""
    image_id = glance.create('qcow2')
    watcher = StoreWatcher(os.path.join(glance.data_dir, 'images'))
    watcher.start()
    try:
        status, body = http_put(glance, '/v2/images/%s/file' % image_id,
                                unsafe_body(header, total), total)
    finally:
        largest = watcher.stop()
    logged = None
    for line in glance.log().splitlines():
        if image_id in line:
            m = re.search(r'refused after (\d+) bytes', line)
            if m:
                logged = int(m.group(1))
    status_after = glance.show(image_id)['status']
    glance.request('DELETE', '/v2/images/%s' % image_id)
    return status, logged, largest, status_after, body
