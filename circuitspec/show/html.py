"""Wrap the SVG in one self-contained HTML page: inline CSS and a little script, nothing fetched.

The script only adds interaction to an SVG that is complete without it: hovering a box highlights
its connections and shows its details (the same text as the SVG's ``<title>`` tooltips), and a
button toggles between the natural size and fitting the window. The page is also well-formed XML
(script and style in CDATA sections), so tools and tests can parse it.
"""

from __future__ import annotations

from .layout import Layout
from .svg import esc, render_svg

PAGE_STYLE = """
body { margin: 0; background: #fcfcfb; color: #1f2937; font-family: 'Helvetica Neue', Helvetica, Arial, sans-serif; }
#picture svg.fit { width: 100vw; height: auto; }
#bar { position: fixed; top: 10px; right: 12px; display: flex; gap: 6px; z-index: 2; }
#bar button { font: inherit; font-size: 12px; padding: 4px 10px; border: 1px solid #d1d5db; border-radius: 6px;
              background: #ffffff; color: #374151; cursor: pointer; }
#tip { position: fixed; display: none; max-width: 560px; padding: 8px 10px; border-radius: 6px; z-index: 3;
       background: #111827; color: #f9fafb; font: 12px/1.45 Menlo, Consolas, 'Liberation Mono', monospace;
       white-space: pre-wrap; pointer-events: none; box-shadow: 0 4px 14px rgba(0, 0, 0, 0.25); }
svg.focus .w { opacity: 0.07; }
svg.focus .w.hi { opacity: 1; }
svg.focus .unit { opacity: 0.3; }
svg.focus .unit.hi { opacity: 1; }
.unit { cursor: default; }
"""

SCRIPT = """
(function () {
  var svg = document.querySelector('#picture svg');
  var tip = document.getElementById('tip');
  var wires = Array.prototype.slice.call(svg.querySelectorAll('.w[data-src]'));
  var units = {};
  Array.prototype.forEach.call(svg.querySelectorAll('.unit, .w[data-src]'), function (el) {
    var title = el.querySelector('title');
    if (title) { el.setAttribute('data-tip', title.textContent); title.parentNode.removeChild(title); }
    if (el.classList.contains('unit')) { units[el.id] = el; }
  });
  function clear() {
    svg.classList.remove('focus');
    Array.prototype.forEach.call(svg.querySelectorAll('.hi'), function (el) { el.classList.remove('hi'); });
  }
  function focusUnit(id) {
    svg.classList.add('focus');
    units[id].classList.add('hi');
    wires.forEach(function (w) {
      var s = w.getAttribute('data-src'), d = w.getAttribute('data-dst');
      if (s === id || d === id) {
        w.classList.add('hi');
        units[s].classList.add('hi');
        units[d].classList.add('hi');
      }
    });
  }
  function focusWire(w) {
    svg.classList.add('focus');
    w.classList.add('hi');
    units[w.getAttribute('data-src')].classList.add('hi');
    units[w.getAttribute('data-dst')].classList.add('hi');
  }
  function show(text, ev) {
    tip.textContent = text;
    tip.style.display = 'block';
    var x = ev.clientX + 16, y = ev.clientY + 16;
    if (x + tip.offsetWidth > window.innerWidth) { x = Math.max(4, ev.clientX - tip.offsetWidth - 16); }
    if (y + tip.offsetHeight > window.innerHeight) { y = Math.max(4, ev.clientY - tip.offsetHeight - 16); }
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  }
  svg.addEventListener('mousemove', function (ev) {
    var el = ev.target.closest('.unit, .w[data-src]');
    clear();
    if (!el) { tip.style.display = 'none'; return; }
    if (el.classList.contains('unit')) { focusUnit(el.id); } else { focusWire(el); }
    show(el.getAttribute('data-tip') || '', ev);
  });
  svg.addEventListener('mouseleave', function () { clear(); tip.style.display = 'none'; });
  document.getElementById('fit').addEventListener('click', function () {
    var fitted = svg.classList.toggle('fit');
    this.textContent = fitted ? 'actual size' : 'fit to window';
  });
})();
"""


def render_html(layout: Layout) -> str:
    title = layout.picture.title
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8"/>',
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
        f"<title>{esc(title)} · circuitspec show</title>",
        f"<style>/*<![CDATA[*/{PAGE_STYLE}/*]]>*/</style>",
        "</head>",
        "<body>",
        '<div id="bar"><button id="fit" type="button">fit to window</button></div>',
        f'<div id="picture">{render_svg(layout, standalone=False)}</div>',
        '<div id="tip"></div>',
        f"<script>//<![CDATA[{SCRIPT}//]]></script>",
        "</body>",
        "</html>",
        "",
    ])
