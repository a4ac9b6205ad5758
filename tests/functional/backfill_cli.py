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


"""Helpers of tests/functional/test_backfill.py: images added by location
over http, and ``glance-vsize backfill`` run on a pseudo-terminal."""

import os
import pty
import re
import subprocess


def add_http_images(glance, server, names):
    """{name: image id}: images added by location (POST, the service
    user) from ``server``, active; Glance alone leaves them without a
    virtual size.
    """
    from tests.functional import test_locations
    ids = {}
    for name in names:
        image_id = glance.create('qcow2', name=name)
        status, body = test_locations.add_location_as_service(
            glance, image_id, server.url(name + '.qcow2'))
        assert status == 202, body
        ids[name] = image_id
    for image_id in ids.values():
        image = glance.wait(image_id)
        assert (image['status'], image['virtual_size']) == ('active', None)
    return ids


#: The progress line, as a terminal receives it.
PROGRESS = re.compile(
    r'\r(\d+) images, ([\d.]+) MiB read, ([\d.]+) images/s')


def on_a_terminal(args):
    """Run ``args`` with stderr on a pseudo-terminal and stdout on a
    pipe: (exit status, what the terminal showed, stdout).
    """
    main, sub = pty.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=sub)
    os.close(sub)
    shown = b''
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:         # EIO: the command closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(main)
    out = proc.stdout.read()
    proc.stdout.close()
    return proc.wait(timeout=300), shown.decode(), out.decode()
