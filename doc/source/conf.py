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

"""Sphinx configuration of glance_vsize's documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath('../..'))
sys.path.insert(0, os.path.abspath('_exts'))

extensions = [
    'sphinx.ext.autodoc',
    'openstackdocstheme',
    'oslo_config.sphinxext',
    'vsize_docs',
]

openstackdocs_repo_name = 'openstack/glance_vsize'
openstackdocs_bug_project = 'glance_vsize'
openstackdocs_bug_tag = ''
openstackdocs_auto_name = False

project = 'glance_vsize'
copyright = '2026, glance_vsize developers'
source_suffix = '.rst'
master_doc = 'index'
exclude_patterns = ['_build']
add_module_names = False
pygments_style = 'native'
autodoc_member_order = 'bysource'
html_theme = 'openstackdocs'
htmlhelp_basename = 'glance_vsizedoc'
