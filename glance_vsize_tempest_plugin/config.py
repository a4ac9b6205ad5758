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

"""Options of the plugin, group ``[glance_vsize]`` of tempest.conf."""

from oslo_config import cfg

group = cfg.OptGroup(
    name='glance_vsize',
    title='glance_vsize plugin options',
    help='How the glance_vsize Tempest plugin makes its test images and '
         'serves them to Glance for web-download.')

opts = [
    cfg.HostAddressOpt(
        'http_bind_host',
        default='127.0.0.1',
        help='Address the plugin binds its HTTP server to. The server runs '
             'in a thread of the test process and serves the test images '
             'that web-download tests ask Glance to fetch. Glance must be '
             'allowed to reach it: [import_filtering_opts] allowed_hosts '
             'and allowed_ports of glance-api.conf.'),
    cfg.PortOpt(
        'http_bind_port',
        default=0,
        help='Port of that HTTP server; 0 picks a free port for each test '
             'process (concurrent workers each run their own server).'),
    cfg.HostAddressOpt(
        'http_url_host',
        help='Host name or address put in the URLs handed to Glance, when '
             'Glance reaches the server by another address than '
             'http_bind_host (for instance when http_bind_host is 0.0.0.0). '
             'Default: http_bind_host.'),
    cfg.StrOpt(
        'qemu_img',
        default='qemu-img',
        help='qemu-img executable that makes the test images and whose '
             '"qemu-img info --output=json" is the expected virtual size.'),
]
