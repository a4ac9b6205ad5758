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

"""Accept only what qemu can use, on corpus-like variants: a bounded run
of ``tools/qemu_agreement.py`` (random bytes of the first 4 KiB and of the
last 512 bytes of every generated image of a Glance format).  glance_vsize
never disagrees with qemu-img; oslo.utils, run on the same variants, does,
which shows that the comparison can see a disagreement at all.
"""

import argparse
import importlib.util
import logging
import os

from tests.hardening import support

COUNT = 2000 if support.long_run() else 300

_TOOL = os.path.join(os.path.dirname(__file__), '..', '..', 'tools',
                     'qemu_agreement.py')


def _tool():
    spec = importlib.util.spec_from_file_location('qemu_agreement', _TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_glance_vsize_accepts_only_what_qemu_opens(corpus):
    tool = _tool()
    args = argparse.Namespace(count=COUNT, seed='hardening',
                              images=corpus[0], head_bytes=4, tail_bytes=2)
    logging.disable(logging.CRITICAL)
    try:
        counts, examples = tool.run(args)
    finally:
        logging.disable(logging.NOTSET)
    total = counts['all']
    assert total['variants'] == COUNT
    ours = [line for line in examples if line.startswith('glance_vsize')]
    assert ours == []
    assert total['glance_vsize accepts'] > COUNT // 2
    # The same variants catch oslo.utils accepting what qemu refuses.
    assert total['oslo.utils disagrees'] > 0
