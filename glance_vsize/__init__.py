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

"""glance_vsize: exact virtual size and safety verdicts for disk images.

The public API of the pure inspection engine::

    from glance_vsize import InspectingReader, inspect_file

    reader = InspectingReader(request_body, disk_format='qcow2')
    store.add(reader)                       # hands chunks on unchanged
    reader.result.virtual_size              # once the stream has ended

    inspect_file('/var/lib/glance/staging/IMAGE_ID').safe
"""

from glance_vsize.inspection import ImageRejected  # noqa: F401
from glance_vsize.inspection import Inspection  # noqa: F401
from glance_vsize.inspection import Policy  # noqa: F401
from glance_vsize.push import StreamInspector  # noqa: F401
from glance_vsize.seekable import inspect_file  # noqa: F401
from glance_vsize.stream import InspectingReader  # noqa: F401
