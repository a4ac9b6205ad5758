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

"""Sphinx directives that render reference text from the code itself.

``.. vsize-checks::`` lists every check name with what it means, from the
declarations (:mod:`glance_vsize.checks`); ``.. vsize-cli-help::``
shows the help of ``glance-vsize inspect``, from its parser.
"""

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

from glance_vsize import checks
from glance_vsize.cmd import cli


def _checks_rst():
    catalogue = checks.catalogue()
    lines = []
    for owner, declared in catalogue.items():
        title = ('The engine (every image)' if owner == 'engine'
                 else '%s' % owner)
        lines += [title, '-' * len(title), '']
        if not declared:
            lines += ['No checks of its own: only those of the engine.', '']
            continue
        lines += ['.. list-table::', '   :header-rows: 1',
                  '   :widths: 25 75', '', '   * - Check', '     - Meaning']
        for name, meaning in declared.items():
            lines += ['   * - ``%s``' % name, '     - %s' % meaning]
        lines.append('')
    return lines


class ChecksDirective(Directive):
    """Every declared check, by inspector, container and the engine."""

    def run(self):
        node = nodes.section()
        node.document = self.state.document
        self.state.nested_parse(StringList(_checks_rst(), 'checks'), 0,
                                node, match_titles=True)
        return node.children


class CliHelpDirective(Directive):
    """The help of ``glance-vsize inspect``."""

    def run(self):
        parser = cli._parser()
        actions = [a for a in parser._actions if a.dest == 'command']
        text = actions[0].choices['inspect'].format_help()
        return [nodes.literal_block(text, text)]


def setup(app):
    app.add_directive('vsize-checks', ChecksDirective)
    app.add_directive('vsize-cli-help', CliHelpDirective)
    return {'parallel_read_safe': True}
