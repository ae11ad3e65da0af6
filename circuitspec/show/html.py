"""Wrap the SVG in one self-contained HTML page: inline CSS and a little script, nothing fetched.

The script only adds interaction to an SVG that is complete without it: the page opens fitted to
the window; the wheel zooms around the pointer, dragging pans, keys and buttons zoom, fit and show the
actual size (all by rewriting the SVG's viewBox); zoomed out, each box shows a compact label of a
constant screen size instead of its detail lines; hovering a box highlights its connections and shows
its details (the same text as the SVG's ``<title>`` tooltips). The page is also well-formed XML
(script and style in CDATA sections), so tools and tests can parse it.
"""

from __future__ import annotations

from .layout import Layout
from .svg import esc, render_svg

PAGE_STYLE = """
html, body { height: 100%; overflow: hidden; }
body { margin: 0; background: #fcfcfb; color: #1f2937; font-family: 'Helvetica Neue', Helvetica, Arial, sans-serif; }
#picture { position: fixed; inset: 0; }
#picture svg { display: block; width: 100%; height: 100%; touch-action: none; cursor: grab; }
#picture svg.dragging { cursor: grabbing; }
#bar { position: fixed; top: 8px; right: 10px; display: flex; gap: 6px; z-index: 2; align-items: center;
       padding: 3px; border-radius: 8px; background: rgba(252, 252, 251, 0.92); }  /* readable over the picture */
#bar button { font: inherit; font-size: 12px; padding: 4px 10px; border: 1px solid #d1d5db; border-radius: 6px;
              background: #ffffff; color: #374151; cursor: pointer; }
#bar #zoom { font-size: 12px; color: #6b7280; min-width: 3.5em; text-align: right; }
#tip { position: fixed; display: none; max-width: 560px; padding: 8px 10px; border-radius: 6px; z-index: 3;
       background: #111827; color: #f9fafb; font: 12px/1.45 Menlo, Consolas, 'Liberation Mono', monospace;
       white-space: pre-wrap; pointer-events: none; box-shadow: 0 4px 14px rgba(0, 0, 0, 0.25); }
svg.focus .w { opacity: 0.07; }
svg.focus .w.hi { opacity: 1; }
svg.focus .unit { opacity: 0.3; }
svg.focus .unit.hi { opacity: 1; }
/* Zoomed out ("far"): the detail lines would be a few pixels tall, so each box shows its compact label
   instead, at a constant size on screen (--px is one screen pixel in picture units, set by the script),
   with a white halo so it stays readable over the activation plot. */
svg.far .unit .name, svg.far .unit .hook, svg.far .unit .desc, svg.far .unit .small, svg.far .unit .deco,
svg.far .col-title, svg.far .col-hooks { display: none; }
svg.far .lod { display: inline; font-size: calc(10px * var(--px, 1)); fill: #111827;
                     stroke: #ffffff; stroke-width: calc(3px * var(--px, 1)); stroke-linejoin: round; paint-order: stroke; }
svg.far .band-title { font-size: calc(12px * var(--px, 1)); }
"""

SCRIPT = """
(function () {
  var svg = document.querySelector('#picture svg');
  var tip = document.getElementById('tip');

  // ---- pan and zoom ------------------------------------------------------------------------------
  // The picture keeps its layout coordinates; the view is a scale k (screen pixels per picture unit)
  // and the picture point (x, y) shown at the window's top-left corner. Every change rewrites the
  // viewBox, whose aspect ratio always equals the window's, so nothing is letterboxed and a screen
  // offset converts to picture units by dividing by k.
  var full = svg.viewBox.baseVal, pictureW = full.width, pictureH = full.height;
  var view = {x: 0, y: 0, k: 1, fitted: true};  // fitted: untouched since the last fit
  var NAME_PX = 12.5, LEGIBLE_PX = 9, LABEL_PX = 10, MAX_K = 4;
  var zoomText = document.getElementById('zoom');

  function screen() {
    var r = svg.getBoundingClientRect();
    return {left: r.left, top: r.top, w: r.width || 1, h: r.height || 1};
  }
  // The scale that shows the whole picture, but never above actual size: a small picture in a large
  // window is not blown up (its text would be larger than the page's own).
  function fitScale() {
    var s = screen();
    return Math.min(1, s.w / pictureW, s.h / pictureH);
  }
  // no further out than half the fitted size (the picture would be a speck), no further in than 4x
  function clampScale(k) { return Math.min(MAX_K, Math.max(fitScale() / 2, k)); }
  function apply() {
    var s = screen();
    view.k = clampScale(view.k);
    svg.setAttribute('viewBox', [view.x, view.y, s.w / view.k, s.h / view.k].map(function (v) {
      return v.toFixed(2);
    }).join(' '));
    zoomText.textContent = Math.round(view.k * 100) + '%';
    levelOfDetail();
  }
  function fit() {
    var s = screen();
    view.k = fitScale();
    view.x = (pictureW - s.w / view.k) / 2;  // centred: the spare room split on both sides
    view.y = (pictureH - s.h / view.k) / 2;
    view.fitted = true;
    apply();
  }
  // Scale by `factor` keeping the picture point under the screen point (cx, cy) where it is.
  function zoomAt(factor, cx, cy) {
    var s = screen(), px = cx - s.left, py = cy - s.top;
    var x = view.x + px / view.k, y = view.y + py / view.k;
    view.k = clampScale(view.k * factor);
    view.fitted = false;
    view.x = x - px / view.k;
    view.y = y - py / view.k;
    apply();
  }
  function zoomCentre(factor) {
    var s = screen();
    zoomAt(factor, s.left + s.w / 2, s.top + s.h / 2);
  }
  function panBy(dx, dy) {
    view.x -= dx / view.k;
    view.y -= dy / view.k;
    view.fitted = false;
    apply();
  }

  // ---- level of detail ---------------------------------------------------------------------------
  // Below the scale at which a box's bold name is LEGIBLE_PX on screen, the CSS class 'far' swaps
  // the detail lines for one compact label per box, LABEL_PX on screen whatever the zoom. Its text is
  // wrapped here to the box's size at the current scale, and only re-wrapped when the number of
  // characters or lines that fit changes.
  var CHAR_EM = 0.6, LINE_EM = 1.2;
  var labels = Array.prototype.map.call(svg.querySelectorAll('.lod'), function (el) {
    return {el: el, text: el.textContent, w: parseFloat(el.getAttribute('data-w')),
            h: parseFloat(el.getAttribute('data-h') || 'Infinity'), rows: parseInt(el.getAttribute('data-rows') || '3', 10),
            tail: el.getAttribute('data-tail') || '', up: el.hasAttribute('data-up'), key: '', em: 0};
  });
  // Lines of at most perLine characters, at most `rows` of them. Lines break after spaces and
  // underscores, since spec names are identifiers (quote_head_values); only a piece wider than a
  // whole line is cut. When the text needs more rows, the last one ends with an ellipsis and the
  // label's tail (the channel, h1 v19), which is what tells apart the boxes of one group.
  function wrap(text, perLine, rows, tail) {
    var lines = [], line = '';
    (text.match(/[^ _]*[ _]?/g) || []).forEach(function (piece) {
      if (line && (line + piece).trim().length > perLine) { lines.push(line.trim()); line = ''; }
      while (piece.trim().length > perLine) { lines.push(piece.slice(0, perLine)); piece = piece.slice(perLine); }
      line += piece;
    });
    if (line.trim()) { lines.push(line.trim()); }
    if (lines.length > rows) {
      var end = tail && tail.length + 2 <= perLine ? '\\u2026 ' + tail : '\\u2026';
      lines = lines.slice(0, rows);
      lines[rows - 1] = lines[rows - 1].slice(0, perLine - end.length).trim() + end;
    }
    return lines;
  }
  function placeLabel(label) {
    if (!label.em) {
      // The first time a label shows, it still holds its whole text on one line: measure its mean
      // character width in the reader's font, 10% more since a line of wide characters (digits, #) is wider
      // than the mean; CHAR_EM is the estimate if it cannot be measured.
      var width = label.el.getComputedTextLength();
      label.em = width > 0 ? 1.1 * width / (label.text.length * LABEL_PX / view.k) : CHAR_EM;
    }
    var perLine = Math.max(3, Math.floor((label.w - 18) * view.k / (label.em * LABEL_PX)));
    var fitRows = Math.floor((label.h - 6) * view.k / (LINE_EM * LABEL_PX));
    var rows = Math.max(1, Math.min(label.rows, fitRows));
    var key = perLine + ':' + rows;
    if (label.key === key) { return; }
    label.key = key;
    while (label.el.firstChild) { label.el.removeChild(label.el.firstChild); }
    var lines = wrap(label.text, perLine, rows, label.tail);
    lines.forEach(function (line, i) {
      var span = document.createElementNS(svg.namespaceURI, 'tspan');
      span.setAttribute('x', label.el.getAttribute('x'));
      // a box label hangs from its y (the first line's top there); a column label stands on it,
      // growing upwards, so its last line ends just above the column's first box
      var first = label.up ? -(lines.length - 1) * LINE_EM + 'em' : '0.95em';
      span.setAttribute('dy', i ? LINE_EM + 'em' : first);
      span.textContent = line;
      label.el.appendChild(span);
    });
  }
  function levelOfDetail() {
    var far = view.k * NAME_PX < LEGIBLE_PX;
    svg.classList.toggle('far', far);
    svg.style.setProperty('--px', (1 / view.k).toFixed(4));
    if (far) { labels.forEach(placeLabel); }
  }

  // ---- input: wheel, drag, keys, buttons ---------------------------------------------------------
  svg.addEventListener('wheel', function (ev) {
    ev.preventDefault();  // the page itself never scrolls; the wheel (or a trackpad pinch) zooms
    var dy = ev.deltaY * (ev.deltaMode === 1 ? 16 : ev.deltaMode === 2 ? 400 : 1);
    zoomAt(Math.exp(-dy * (ev.ctrlKey ? 0.01 : 0.002)), ev.clientX, ev.clientY);
  }, {passive: false});

  var drag = null;  // {x, y, moved}: where the pointer was, and whether it has moved enough to be a drag
  svg.addEventListener('pointerdown', function (ev) {
    if (ev.button !== 0) { return; }
    drag = {x: ev.clientX, y: ev.clientY, moved: false};
    // keep receiving the moves when the pointer leaves the window mid-drag (a scripted event has no
    // live pointer to capture, which the drag does not need)
    try { svg.setPointerCapture(ev.pointerId); } catch (e) { /* no live pointer */ }
  });
  svg.addEventListener('pointermove', function (ev) {
    if (!drag) { return; }
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 3) { return; }  // a click is not a drag
    if (!drag.moved) { drag.moved = true; svg.classList.add('dragging'); hideTip(); }
    drag.x = ev.clientX;
    drag.y = ev.clientY;
    panBy(dx, dy);
  });
  function endDrag() { drag = null; svg.classList.remove('dragging'); }
  svg.addEventListener('pointerup', endDrag);
  svg.addEventListener('pointercancel', endDrag);

  function actualSize() { zoomCentre(1 / view.k); }
  function zoomIn() { zoomCentre(1.25); }
  function zoomOut() { zoomCentre(0.8); }
  var STEP = 80;  // pixels an arrow key pans
  var KEYS = {
    '+': zoomIn, '=': zoomIn, '-': zoomOut, '_': zoomOut, '0': fit, '1': actualSize,
    'ArrowLeft': function () { panBy(STEP, 0); }, 'ArrowRight': function () { panBy(-STEP, 0); },
    'ArrowUp': function () { panBy(0, STEP); }, 'ArrowDown': function () { panBy(0, -STEP); }
  };
  document.addEventListener('keydown', function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }  // leave the browser's own shortcuts alone
    if (KEYS[ev.key]) { ev.preventDefault(); KEYS[ev.key](); }
  });
  document.getElementById('fit').addEventListener('click', fit);
  document.getElementById('actual').addEventListener('click', actualSize);
  document.getElementById('zoom-in').addEventListener('click', zoomIn);
  document.getElementById('zoom-out').addEventListener('click', zoomOut);
  // A resized window fits again when the reader has not zoomed or panned since the last fit (a
  // headless browser also sizes its viewport after the script has run); otherwise it keeps the scale
  // and the picture point at its centre.
  var last = screen();
  window.addEventListener('resize', function () {
    var s = screen();
    if (view.fitted) { last = s; fit(); return; }
    view.x += (last.w - s.w) / 2 / view.k;
    view.y += (last.h - s.h) / 2 / view.k;
    last = s;
    apply();
  });

  // ---- hover: highlight a box's connections, show its details --------------------------------------
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
  function hideTip() { clear(); tip.style.display = 'none'; }
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
    if (drag && drag.moved) { return; }  // no highlighting flicker while panning
    var el = ev.target.closest('.unit, .w[data-src]');
    clear();
    if (!el) { tip.style.display = 'none'; return; }
    if (el.classList.contains('unit')) { focusUnit(el.id); } else { focusWire(el); }
    show(el.getAttribute('data-tip') || '', ev);
  });
  svg.addEventListener('mouseleave', hideTip);

  // The page opens fitted to the window; the view is scriptable (tests, the console) as circuitView.
  fit();
  window.circuitView = {
    fit: fit, actualSize: actualSize, zoomAt: zoomAt, panBy: panBy,
    scale: function () { return view.k; }
  };
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
        '<div id="bar"><span id="zoom"></span>'
        '<button id="zoom-out" type="button" title="zoom out (-)">−</button>'
        '<button id="zoom-in" type="button" title="zoom in (+)">+</button>'
        '<button id="fit" type="button" title="fit to window (0)">fit</button>'
        '<button id="actual" type="button" title="actual size (1)">100%</button></div>',
        f'<div id="picture">{render_svg(layout, standalone=False)}</div>',
        '<div id="tip"></div>',
        f"<script>//<![CDATA[{SCRIPT}//]]></script>",
        "</body>",
        "</html>",
        "",
    ])
