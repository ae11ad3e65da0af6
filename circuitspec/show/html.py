"""Wrap the SVG in one self-contained HTML page: inline CSS and a little script, nothing fetched.

The script only adds interaction to an SVG that is complete without it: the page opens fitted to
the window; the wheel zooms around the pointer, dragging pans, keys and buttons zoom, fit and show the
actual size (all by rewriting the SVG's viewBox); zoomed out, each box shows a compact label of a
constant screen size instead of its detail lines; hovering a box highlights its connections and shows
its details (the same text as the SVG's ``<title>`` tooltips). The page is also well-formed XML
(script and style in CDATA sections), so tools and tests can parse it.

The title, facts and legend sit above the picture as HTML, outside the zoomed SVG, so they keep their
size at every zoom. Foldable groups (:mod:`.groups`) fold and unfold in the page: the SVG holds every
box of both states, and the script re-stacks the columns and re-routes the wires with the same rules
as :mod:`.layout` (a port of ``_place_boxes``, ``_Router`` and ``_wires``, fed the layout's sizes as
JSON), so the page in a given state draws what ``lay_out(..., collapsed=...)`` computes in Python.
"""

from __future__ import annotations

import json

from . import layout as L
from .layout import Layout, lay_out
from .legend import lay_out_legend
from .svg import _legend_item, esc, render_svg, unit_title

LEGEND_W = 1100  # the legend above the page's picture is wrapped to this many pixels
FOLD_BELOW = 0.3  # fold every group at load when the unfolded picture, fitted by its height, is drawn smaller

PAGE_STYLE = """
html, body { height: 100%; overflow: hidden; }
body { margin: 0; background: #fcfcfb; color: #1f2937; font-family: 'Helvetica Neue', Helvetica, Arial, sans-serif;
       display: flex; flex-direction: column; }
#head { flex: none; padding: 8px 16px 4px 16px; border-bottom: 1px solid #e7e5e4; overflow: hidden; max-height: 45vh; }
#head.hidden { display: none; }
#head .title { font-size: 22px; font-weight: 700; margin-right: 560px; }
#head .subtitle { font-size: 14px; font-style: italic; color: #4b5563; }
#head .fact { font-size: 13px; color: #374151; }
#head .note { font-size: 12px; color: #6b7280; }
#head svg { display: block; margin-top: 4px; }
#picture { position: relative; flex: 1 1 auto; min-height: 0; }
.circuit .ghead { cursor: pointer; }
.circuit .ghead:hover .ghead-bg { fill: #d6d3d1; }
.circuit .gbox { cursor: pointer; }
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
  var full = svg.viewBox.baseVal, pictureW = full.width, pictureH = full.height;  // pictureH changes with folding
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
      var width = label.el.getComputedTextLength();  // 0 while its box is hidden: measured when shown
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
    // a hidden box's label (the other state of a foldable group) is placed when its box is shown
    if (far) { labels.forEach(function (l) { if (!l.el.closest('[display="none"]')) { placeLabel(l); } }); }
  }

  // ---- input: wheel, drag, keys, buttons ---------------------------------------------------------
  svg.addEventListener('wheel', function (ev) {
    ev.preventDefault();  // the page itself never scrolls; the wheel (or a trackpad pinch) zooms
    var dy = ev.deltaY * (ev.deltaMode === 1 ? 16 : ev.deltaMode === 2 ? 400 : 1);
    zoomAt(Math.exp(-dy * (ev.ctrlKey ? 0.01 : 0.002)), ev.clientX, ev.clientY);
  }, {passive: false});

  var drag = null;  // {x, y, moved}: where the pointer was, and whether it has moved enough to be a drag
  var dragged = false;  // the last press moved the view: its click folds nothing
  svg.addEventListener('pointerdown', function (ev) {
    if (ev.button !== 0) { return; }
    dragged = false;
    drag = {x: ev.clientX, y: ev.clientY, moved: false};
    // keep receiving the moves when the pointer leaves the window mid-drag (a scripted event has no
    // live pointer to capture, which the drag does not need)
    try { svg.setPointerCapture(ev.pointerId); } catch (e) { /* no live pointer */ }
  });
  svg.addEventListener('pointermove', function (ev) {
    if (!drag) { return; }
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 3) { return; }  // a click is not a drag
    if (!drag.moved) { drag.moved = true; dragged = true; svg.classList.add('dragging'); hideTip(); }
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


  // ---- folding groups ------------------------------------------------------------------------------
  // The SVG holds every box of both states (the other state's hidden). Folding or unfolding re-stacks
  // the columns and re-routes every wire by the rules of layout.py (_place_boxes, _Router, _wires),
  // from the sizes the page carries as JSON (#layout-data).
  var D = JSON.parse(document.getElementById('layout-data').textContent);
  var folded = {};
  D.collapsed.forEach(function (g) { folded[g] = true; });
  var KIND_ORDER = {structural: 0, weight: 1, declared: 2};
  // numbers as Python's format writes them: an exact tie (716.25) rounds to even, where toFixed rounds up
  function fx(v, d) {
    var p = Math.pow(10, d), s = v * p;
    if (Number.isInteger(v * Math.pow(2, d + 1)) && !Number.isInteger(s)) {
      var f = Math.floor(s);
      return ((f % 2 === 0 ? f : f + 1) / p).toFixed(d);
    }
    return v.toFixed(d);
  }
  function f1(v) { return fx(v, 1); }
  function cmp(a, b) { return a < b ? -1 : a > b ? 1 : 0; }
  function drawnIds() {
    var out = [];
    D.order.forEach(function (id) {
      var g = D.units[id][3];
      if (g && folded[g]) { if (D.groups[g][2][0] === id) { out.push(g); } } else { out.push(id); }
    });
    return out;
  }
  function info(id) {  // [column, height, segment, group] of a unit or a folded group's box
    if (D.units[id]) { return D.units[id]; }
    var g = D.groups[id];
    return [g[0], g[1], D.units[g[2][0]][2], id];
  }
  function isStart(id) {
    if (D.groups[id]) { return true; }
    var g = D.units[id][3];
    return !!g && !folded[g] && D.groups[g][2][0] === id;
  }
  function gap(a, b) { return info(a)[2] === info(b)[2] ? D.boxGap : D.groupGap; }
  function place(ids, bodyTop) {
    var byCol = D.cols.map(function () { return []; });
    ids.forEach(function (id) { byCol[info(id)[0]].push(id); });
    function colHeight(us) {
      if (!us.length) { return 0; }
      var h = 0, g = 0, n = 0, j;
      for (j = 0; j < us.length; j++) { h += info(us[j])[1]; }
      for (j = 1; j < us.length; j++) { g += gap(us[j - 1], us[j]); }
      for (j = 0; j < us.length; j++) { if (isStart(us[j])) { n++; } }
      return h + g + D.groupHead * n;
    }
    var bodyH = 0;
    byCol.forEach(function (us) { bodyH = Math.max(bodyH, colHeight(us)); });
    var boxes = [], byId = {}, heads = {};
    byCol.forEach(function (us, c) {
      var x = D.cols[c], y = bodyTop + (bodyH - colHeight(us)) / 2;
      us.forEach(function (id, j) {
        if (j) { y += gap(us[j - 1], id); }
        if (isStart(id)) { heads[D.groups[id] ? id : D.units[id][3]] = [x, y]; y += D.groupHead; }
        var b = {id: id, c: c, x: x, y: y, w: D.boxW, h: info(id)[1]};
        b.cy = b.y + b.h / 2;
        boxes.push(b);
        byId[id] = b;
        y += b.h;
      });
    });
    return {boxes: boxes, byId: byId, heads: heads, bodyH: bodyH};
  }
  function Router(boxes, top, bottom) {
    this.byCol = {};
    var self = this;
    boxes.forEach(function (b) { (self.byCol[b.c] = self.byCol[b.c] || []).push(b); });
    this.highest = top;
    this.lowest = bottom;
    this.lanes = {above: 0, below: 0};
  }
  Router.prototype.skipped = function (c1, c2) {
    var out = [];
    for (var c = c1 + 1; c < c2; c++) { out = out.concat(this.byCol[c] || []); }
    return out;
  };
  Router.prototype.path = function (c1, c2, x1, y1, x2, y2) {
    var start = 'M' + f1(x1) + ',' + f1(y1) + ' ';
    var lo = Math.min(y1, y2) - 10, hi = Math.max(y1, y2) + 10;
    var skipped = this.skipped(c1, c2);
    if (!skipped.some(function (b) { return b.y < hi && b.y + b.h > lo; })) {
      var bend = Math.max(30, (x2 - x1) * 0.45);
      return [start + 'C' + f1(x1 + bend) + ',' + f1(y1) + ' ' + f1(x2 - bend) + ',' + f1(y2) + ' ' + f1(x2) + ',' + f1(y2), false];
    }
    var top = Math.min.apply(null, skipped.map(function (b) { return b.y; }));
    var bottom = Math.max.apply(null, skipped.map(function (b) { return b.y + b.h; }));
    var mid = (y1 + y2) / 2, side = mid - top <= bottom - mid ? 'above' : 'below';
    var k = this.lanes[side]++, lane;
    if (side === 'above') { lane = top - 14 - D.laneStep * k; this.highest = Math.min(this.highest, lane); }
    else { lane = bottom + 14 + D.laneStep * k; this.lowest = Math.max(this.lowest, lane); }
    var G = D.colGap, g1 = x1 + G / 2, g2 = x2 - G / 2;
    return [start + 'C' + f1(x1 + G * 0.35) + ',' + f1(y1) + ' ' + f1(g1 - G * 0.15) + ',' + f1(lane) + ' ' + f1(g1) + ',' + f1(lane) +
            ' L' + f1(g2) + ',' + f1(lane) + ' C' + f1(g2 + G * 0.15) + ',' + f1(lane) + ' ' + f1(x2 - G * 0.35) + ',' + f1(y2) + ' ' +
            f1(x2) + ',' + f1(y2), true];
  };
  function rep(id) { var g = D.units[id] && D.units[id][3]; return g && folded[g] ? g : id; }
  // links with folded ends merged, as groups.merge_links: [src, dst, kind, strength, signed, count, note]
  function drawnLinks() {
    var merged = {}, keys = [];
    D.links.forEach(function (l) {
      var key = rep(l[0]) + '\\u0000' + rep(l[1]) + '\\u0000' + l[2];
      if (!merged[key]) { merged[key] = []; keys.push(key); }
      merged[key].push(l);
    });
    return keys.map(function (key) {
      var parts = merged[key], k = key.split('\\u0000');
      if (parts.length === 1 && parts[0][0] === k[0] && parts[0][1] === k[1]) { return parts[0]; }
      var strength = 0, signed = 0, count = 0;
      parts.forEach(function (p) { strength += p[3]; signed += p[4]; count += p[5]; });
      var note = parts[0][6];
      if (parts.length > 1) {
        var top = parts.slice().sort(function (a, b) { return b[3] - a[3]; }).slice(0, 3);
        note = parts.length + ' connections of a collapsed group, merged (sum of |w| ' + +strength.toPrecision(3) +
          '); the strongest:\\n' + top.map(function (p) { return p[6].split('\\n')[0]; }).join('\\n');
      }
      return [k[0], k[1], k[2], strength, signed, count, note];
    });
  }
  function ports(n, b) {
    var inset = Math.min(14, b.h * 0.25), top = b.y + inset, bottom = b.y + b.h - inset, out = [];
    if (n === 1) { return [b.cy]; }
    for (var k = 0; k < n; k++) { out.push(top + (bottom - top) * k / (n - 1)); }
    return out;
  }
  function strokeWidth(l, strongest) {
    if (l[2] === 'structural') { return 1.3; }
    var top = strongest[l[2]] || 1;
    return l[2] === 'declared' ? 1.3 + 2.7 * Math.sqrt(l[3] / top) : 0.8 + 7.2 * Math.sqrt(l[3] / top);
  }
  function route(links, placed, router) {
    var by = placed.byId, outP = [], inP = [], outgoing = {}, incoming = {};
    links.forEach(function (l, i) {
      (outgoing[l[0]] = outgoing[l[0]] || []).push(i);
      (incoming[l[1]] = incoming[l[1]] || []).push(i);
    });
    function assign(groups, other, store, end) {
      Object.keys(groups).forEach(function (id) {
        var idx = groups[id].slice().sort(function (a, b) {
          var p = by[links[a][other]], q = by[links[b][other]];
          return p.cy - q.cy || p.x - q.x || cmp(links[a][2], links[b][2]);
        });
        var ys = ports(idx.length, by[id]);
        idx.forEach(function (i, k) { store[i] = ys[k]; });
      });
    }
    assign(outgoing, 1, outP);
    assign(incoming, 0, inP);
    var strongest = {};
    links.forEach(function (l) { strongest[l[2]] = Math.max(strongest[l[2]] || 0, l[3]); });
    var idx = links.map(function (l, i) { return i; }).sort(function (a, b) {
      var la = links[a], lb = links[b];
      return (by[la[1]].c - by[la[0]].c) - (by[lb[1]].c - by[lb[0]].c) || KIND_ORDER[la[2]] - KIND_ORDER[lb[2]] ||
        cmp(la[0], lb[0]) || cmp(la[1], lb[1]);
    });
    var wires = idx.map(function (i) {
      var l = links[i], s = by[l[0]], d = by[l[1]];
      var p = router.path(s.c, d.c, s.x + s.w, outP[i], d.x, inP[i]);
      return {link: l, d: p[0], width: strokeWidth(l, strongest), routed: p[1]};
    });
    return wires.sort(function (a, b) {
      return KIND_ORDER[a.link[2]] - KIND_ORDER[b.link[2]] || a.link[3] - b.link[3] ||
        cmp(a.link[0], b.link[0]) || cmp(a.link[1], b.link[1]);
    });
  }
  // the whole vertical layout for the current folding, as layout.lay_out computes it
  function computeLayout() {
    var ids = drawnIds(), links = drawnLinks(), room = [D.laneRoom, D.laneRoom], placed, wires, bodyTop;
    for (var pass = 0; pass < 2; pass++) {
      bodyTop = D.base + room[0];
      placed = place(ids, bodyTop);
      var router = new Router(placed.boxes, bodyTop, bodyTop + placed.bodyH);
      wires = route(links, placed, router);
      var needed = [Math.max(0, bodyTop - router.highest) + 8, Math.max(0, router.lowest - bodyTop - placed.bodyH) + 8];
      if (needed[0] === room[0] && needed[1] === room[1]) { break; }
      room = needed;
    }
    return {placed: placed, wires: wires, height: D.base + room[0] + placed.bodyH + room[1] + D.margin};
  }
  var wireLayer = svg.querySelector('.wires');
  function signClass(l) {
    if (l[2] !== 'weight') { return ''; }
    if (Math.abs(l[4]) < 0.5 * l[3]) { return ' mixed'; }
    return l[4] > 0 ? ' pos' : ' neg';
  }
  function relayout() {
    var lay = computeLayout();
    Array.prototype.forEach.call(svg.querySelectorAll('.unit'), function (el) {
      var b = lay.placed.byId[el.id];
      if (b) {
        el.removeAttribute('display');
        el.setAttribute('transform', 'translate(' + f1(b.x) + ',' + f1(b.y) + ')');
      } else {
        el.setAttribute('display', 'none');
      }
    });
    Array.prototype.forEach.call(svg.querySelectorAll('.ghead'), function (el) {
      var g = el.getAttribute('data-group'), at = lay.placed.heads[g];
      el.setAttribute('transform', 'translate(' + f1(at[0]) + ',' + f1(at[1]) + ')');
      el.classList.toggle('folded', !!folded[g]);
      el.querySelector('.gsign').textContent = folded[g] ? '\\u25b8' : '\\u25be';
    });
    while (wireLayer.firstChild) { wireLayer.removeChild(wireLayer.firstChild); }
    lay.wires.forEach(function (w) {
      var l = w.link, el = document.createElementNS(svg.namespaceURI, 'path');
      el.setAttribute('class', 'w w-' + l[2] + signClass(l));
      el.setAttribute('d', w.d);
      el.setAttribute('stroke-width', fx(w.width, 2));
      el.setAttribute('data-src', l[0]);
      el.setAttribute('data-dst', l[1]);
      el.setAttribute('data-tip', D.titles[l[0]] + ' \\u2192 ' + D.titles[l[1]] + '\\n' + l[6]);
      wireLayer.appendChild(el);
    });
    wires = Array.prototype.slice.call(svg.querySelectorAll('.w[data-src]'));
    pictureH = lay.height;
    svg.setAttribute('height', f1(pictureH));
    Array.prototype.forEach.call(svg.querySelectorAll('rect.band'), function (el) {
      el.setAttribute('height', f1(pictureH - D.headerH - 10));
    });
    Array.prototype.forEach.call(svg.querySelectorAll('.band-title'), function (el) {
      el.setAttribute('y', f1(pictureH - 10 - 12));
    });
    svg.querySelector('rect').setAttribute('height', f1(pictureH));
    labels.forEach(function (label) { label.key = ''; });
    if (view.fitted) { fit(); } else { apply(); }
  }
  function setFolded(ids, on) {
    ids.forEach(function (g) { if (on) { folded[g] = true; } else { delete folded[g]; } });
    hideTip();
    relayout();
  }
  var allGroups = Object.keys(D.groups);
  function foldAll() { setFolded(allGroups, true); }
  function unfoldAll() { setFolded(allGroups, false); }
  function toggle(g) { setFolded([g], !folded[g]); }
  svg.addEventListener('click', function (ev) {
    if (dragged) { return; }
    var head = ev.target.closest('.ghead'), box = ev.target.closest('.unit.gbox');
    if (head) { toggle(head.getAttribute('data-group')); } else if (box) { toggle(box.id); }
  });
  svg.addEventListener('dblclick', function (ev) {  // zoomed out, a group's name line is small: double-click a box
    var box = ev.target.closest('.unit[data-group]');
    if (box && !box.classList.contains('gbox')) { setFolded([box.getAttribute('data-group')], true); }
  });
  document.getElementById('fold-all').addEventListener('click', foldAll);
  document.getElementById('unfold-all').addEventListener('click', unfoldAll);
  document.getElementById('legend').addEventListener('click', function () {
    document.getElementById('head').classList.toggle('hidden');
    window.dispatchEvent(new Event('resize'));
  });

  // The page opens fitted to the window, with every group folded when the unfolded picture would be
  // fitted by its height at less than FOLD_BELOW (a tall circuit); the view and the folding are
  // scriptable (tests, the console) as circuitView.
  var s0 = screen();
  if (allGroups.length && s0.h / pictureH < s0.w / pictureW && s0.h / pictureH < D.foldBelow) {
    allGroups.forEach(function (g) { folded[g] = true; });
    relayout();
  }
  fit();
  window.circuitView = {
    fit: fit, actualSize: actualSize, zoomAt: zoomAt, panBy: panBy, foldAll: foldAll, unfoldAll: unfoldAll,
    fold: function (g) { setFolded([g], true); }, unfold: function (g) { setFolded([g], false); },
    folded: function () { return Object.keys(folded).sort(); },
    scale: function () { return view.k; }
  };
})();
"""


def _json(data: object) -> str:
    """JSON that is also safe XML text inside a script element (no <, > or &)."""
    return (json.dumps(data, ensure_ascii=True, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def layout_data(layout: Layout) -> dict:
    """What the page's script needs to re-stack the columns and re-route the wires for any folding."""
    expanded, folded = layout.expanded, layout.folded
    heights = dict(layout.heights)
    member_of = {uid: g.id for g in layout.groups for uid in g.units}

    def segment(u) -> str:
        m = u.members[0]
        return f"{m.head}/{m.layer}/{m.hook.startswith('hook_')}"

    titles = {u.id: unit_title(u) for u in expanded.units}
    titles.update({u.id: unit_title(u) for u in folded.units})
    return {
        "cols": [c.x for c in layout.columns], "base": layout.body_top, "headerH": layout.header_h, "margin": L.MARGIN,
        "laneRoom": L.LANE_ROOM, "laneStep": L._Router.LANE_STEP, "boxW": L.BOX_W, "colGap": L.COL_GAP,
        "groupHead": L.GROUP_HEAD, "boxGap": L.BOX_GAP, "groupGap": L.GROUP_GAP, "foldBelow": FOLD_BELOW,
        "order": [u.id for u in expanded.units],
        "units": {u.id: [u.column, heights[u.id], segment(u), member_of.get(u.id, "")] for u in expanded.units},
        "groups": {g.id: [g.column, heights[g.id], list(g.units)] for g in layout.groups},
        "links": [[l.source, l.target, l.kind, l.strength, l.signed, l.count, l.note] for l in expanded.links],
        "titles": titles, "collapsed": sorted(layout.collapsed),
    }


def _head(layout: Layout) -> str:
    """The title, facts, legend and edge note as HTML above the picture: they keep their size at any zoom."""
    picture = layout.picture
    out = [f'<div class="title">{esc(picture.title)}</div>']
    if picture.description:
        out.append(f'<div class="subtitle">{esc(picture.description)}</div>')
    out += [f'<div class="fact">{esc(fact)}</div>' for fact in picture.facts]
    items, height = lay_out_legend(picture, 0, 14, LEGEND_W)
    out.append(f'<svg class="circuit legend-box" width="{LEGEND_W + 20}" height="{height + 2:.0f}" '
               f'viewBox="0 0 {LEGEND_W + 20} {height + 2:.0f}">' + "".join(_legend_item(i) for i in items) + "</svg>")
    out.append(f'<div class="note">{esc(picture.edge_note)}</div>')
    return '<div id="head">' + "".join(out) + "</div>"


def render_html(layout: Layout) -> str:
    """The page around ``layout``'s picture; a layout with a header (``lay_out``'s default, what the SVG
    file draws) is laid out again without it, in the same order, since the page draws it as HTML."""
    if layout.header or layout.expanded is None:
        layout = lay_out(layout.expanded or layout.picture, header=False, collapsed=layout.collapsed,
                         order="keep" if layout.expanded is not None else "barycentre")
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
        _head(layout),
        '<div id="bar"><span id="zoom"></span>'
        '<button id="zoom-out" type="button" title="zoom out (-)">−</button>'
        '<button id="zoom-in" type="button" title="zoom in (+)">+</button>'
        '<button id="fit" type="button" title="fit to window (0)">fit</button>'
        '<button id="actual" type="button" title="actual size (1)">100%</button>'
        '<button id="fold-all" type="button" title="fold every group into one box">fold all</button>'
        '<button id="unfold-all" type="button" title="unfold every group">unfold all</button>'
        '<button id="legend" type="button" title="show or hide the title and legend">legend</button></div>',
        f'<div id="picture">{render_svg(layout, standalone=False, interactive=True)}</div>',
        '<div id="tip"></div>',
        f'<script type="application/json" id="layout-data">{_json(layout_data(layout))}</script>',
        f"<script>//<![CDATA[{SCRIPT}//]]></script>",
        "</body>",
        "</html>",
        "",
    ])
