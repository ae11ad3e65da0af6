"""`circuitspec show`: a spec's resolved circuit as a layered picture (SVG, or HTML around it).

Stages, with plain data between them: :mod:`.build` turns a resolved spec into a
:class:`~.picture.Picture` (boxes from :mod:`.units`, activations from :mod:`.activations`,
connections from :mod:`.edges`); :mod:`.layout` places it; :mod:`.svg` and :mod:`.html` write it.
"""

from .build import ShowOptions, build_picture
from .html import render_html
from .layout import Layout, lay_out
from .picture import Picture
from .svg import render_svg

__all__ = ["Layout", "Picture", "ShowOptions", "build_picture", "lay_out", "render_html", "render_svg"]
