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

"""The pieces of ``tools/benchmark.py``, the issue 5 benchmark.

One module a job: :mod:`report` prints figures beside the issue's targets,
:mod:`images` makes the qemu-img images, :mod:`streams` streams them
through the wrappers, and one module a section: :mod:`streaming` (1),
:mod:`memory` (2), :mod:`seekable` (3), :mod:`glance` (4).
"""

import os


REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
