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

"""The Glance releases glance_vsize supports, and everything the
integration does or says differently for one of them: the one place.

Surveyed on the PyPI wheels (glance 30.2.0, 31.1.0, 32.0.0, 33.0.0) and
the stable branches of openstack/glance.  The same in all four: the paste
file (byte-identical), every glance-api.conf option the integration sets,
the import flow and the arguments it gives plugins and the notifier; so
the paste filter, the import plugin and ``etc/*.patch`` are the same on
every release.  Where Glance holds oslo.utils' format_inspector differs
(``more_inspector_modules``).  What
differs is below, as a deployer meets it.

Standard library only (no Glance import): ``glance-vsize-status`` and
tools/lab read it.
"""

import dataclasses
import functools
from importlib import metadata


@dataclasses.dataclass(frozen=True)
class BrokenPlugin:
    """A Glance import plugin that fails on this release with or without
    glance_vsize (Glance's own bug), and the Glance change that fixes it.
    """
    name: str
    methods: tuple[str, ...]
    why: str


@dataclasses.dataclass(frozen=True)
class GlanceRelease:
    name: str            # OpenStack release, e.g. '2025.1'
    codename: str        # '' until the release is named
    slurp: bool
    glance: int          # Glance's major version on PyPI
    #: Import plugins broken in this release's Glance itself.
    broken_plugins: tuple[BrokenPlugin, ...] = ()
    #: Differences a deployer must know (README "Supported releases").
    notes: tuple[str, ...] = ()
    #: Glance modules holding oslo.utils' ``format_inspector`` beyond
    #: :data:`INSPECTOR_MODULES` (glance_vsize.glance.install rebinds it).
    more_inspector_modules: tuple[str, ...] = ()
    #: Glance alone (``require_image_format_match = True``) refuses every
    #: hybrid ISO upload with 415 (:data:`_HYBRID_ISO_30_31`).
    refuses_hybrid_iso: bool = False
    #: The ``glance.common.utils`` check of a new http(s) location's URL
    #: against ``[import_filtering_opts]``: ``validate_uri``, which Glance
    #: 33 makes before it records the location; Glance 30-32 make none,
    #: and glance_vsize reads a location before Glance records it only
    #: when web-download's ``validate_import_uri`` allows it
    #: (glance_vsize.glance.locations).
    location_uri_check: str = 'validate_import_uri'
    #: glance_store has ``driver.BackendGroupConfiguration`` (5.0 and
    #: later); glance_store 4.9 (2025.1) reads a backend's options from
    #: the backend's own group (glance_vsize.glance.store_reader).
    store_group_config: bool = True

    @property
    def label(self) -> str:
        return '%s%s%s (Glance %d)' % (
            self.name, ' ' + self.codename if self.codename else '',
            ', SLURP' if self.slurp else '', self.glance)


#: Glance 30 and 31 (2025.1, 2025.2): fixed by glance commits 32793690f
#: "Update image size after image decompression" and 76e7b2705 "Fix ZIP
#: file extraction in image_decompression plugin", in 32.0.0 and later
#: only (not backported to a released 30.x or 31.x).
_DECOMPRESSION_30_31 = BrokenPlugin(
    'image_decompression', ('glance-direct', 'web-download',
                            'glance-download'),
    "Glance's image_decompression leaves image.size at the compressed "
    'size (the import then fails in _verify_uploaded_data: "size of '
    'uploaded data is different from current value set on the image") '
    'and extracts a zip as a directory (NotADirectoryError); fixed in '
    'Glance 32 (commits 32793690f, 76e7b2705)')

#: Hybrid ISO (ISO 9660 with a GPT) in ImageProxy.set_data: 30.2.0 and
#: 31.1.0 call ``data.format``, which raises "Multiple formats detected:
#: gpt,iso"; 32+ take ``data.formats`` and size {'iso', 'gpt'} as ISO.
_HYBRID_ISO_30_31 = (
    "Glance's own set_data check (oslo.utils format_inspector, "
    "data.format) raises 'Multiple formats detected: gpt,iso' on a "
    'hybrid ISO: with require_image_format_match = True Glance 30 and 31 '
    'alone refuse every hybrid ISO upload with 415 (the fix is on '
    'stable/2025.1 and stable/2025.2, unreleased); with glance_vsize in '
    'place its engine gives one verdict, ISO')
_415_BODY_30_32 = (
    "Glance's own 415 refusals (safety checks) carry no reason in the "
    "response body before Glance 33 (HTTPUnsupportedMediaType(explanation="
    ')); glance_vsize\'s own refusals name the check on every release')
_STANDALONE_30_32 = (
    'glance-api may still run standalone under eventlet (glance/cmd/'
    'api.py); glance_vsize works the same there, but only gunicorn (WSGI) '
    'is tested')

#: Glance modules holding ``format_inspector`` in every release
#: (``git grep format_inspector`` on each branch): ImageProxy.set_data
#: (create-image, every import's store upload, copy-image) and
#: image_conversion's detect_file_format.
INSPECTOR_MODULES = ('glance.location',
                     'glance.async_.flows.plugins.image_conversion')

RELEASES: tuple[GlanceRelease, ...] = (
    GlanceRelease('2025.1', 'Epoxy', True, 30,
                  broken_plugins=(_DECOMPRESSION_30_31,),
                  refuses_hybrid_iso=True, store_group_config=False,
                  notes=(_HYBRID_ISO_30_31, _415_BODY_30_32,
                         _STANDALONE_30_32,
                         'staging (PUT .../stage) passes size 0 to the '
                         'staging store (31+ pass x-openstack-image-size)')),
    GlanceRelease('2025.2', 'Flamingo', False, 31,
                  broken_plugins=(_DECOMPRESSION_30_31,),
                  refuses_hybrid_iso=True,
                  notes=(_HYBRID_ISO_30_31, _415_BODY_30_32,
                         _STANDALONE_30_32)),
    GlanceRelease('2026.1', 'Gazpacho', True, 32,
                  notes=(_415_BODY_30_32, _STANDALONE_30_32)),
    GlanceRelease('2026.2', '', False, 33,
                  location_uri_check='validate_uri',
                  more_inspector_modules=(
                      'glance.async_.flows.parallel_api_image_import',),
                  notes=('the parallel multi-store import ([DEFAULT] '
                         'max_parallel_stores) exists from Glance 33 only',)),
)


def by_name(name: str) -> GlanceRelease:
    for release in RELEASES:
        if release.name == name:
            return release
    raise ValueError('unknown release %r (supported: %s)' % (
        name, ', '.join(r.name for r in RELEASES)))


def by_glance_version(version: str) -> GlanceRelease | None:
    """The release whose Glance this version (e.g. '30.2.0') is."""
    try:
        major = int(version.split('.')[0])
    except ValueError:
        return None
    for release in RELEASES:
        if release.glance == major:
            return release
    return None


@functools.lru_cache(maxsize=1)
def running() -> GlanceRelease:
    """The release of the installed Glance; the newest for a Glance this
    table does not know (the status check warns about it).
    """
    return by_glance_version(installed_glance() or '') or RELEASES[-1]


def installed_glance() -> str | None:
    """The version of the glance distribution installed beside this one
    (read from its metadata; Glance is not imported), or None.
    """
    try:
        return metadata.version('glance')
    except metadata.PackageNotFoundError:
        return None
