"""`circuitspec show`: the picture's circuit-level facts, its layout, self-contained output, the CLI,
and a real headless browser rendering it (skipped where Debian's chromium is not installed)."""

import json
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from collections import Counter
from html import unescape
from pathlib import Path

import pytest

from circuitspec.cli import main
from circuitspec.commands.check_cmd import check_file
from circuitspec.engine.naming import NodeName
from circuitspec.show import ShowOptions, build_picture, lay_out, render_html, render_svg
from circuitspec.show.units import column_of, columns, compact

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
FAST = ShowOptions(samples=60)
CIRCUIT_KINDS = {"resid", "q", "k", "v", "z", "mlp"}


def resolve(path):
    resolved, diagnostics, _ = check_file(Path(path))
    assert resolved is not None, diagnostics
    return resolved


@pytest.fixture(scope="module")
def quote_head():
    return resolve(SPECS / "quote_head.circ")


@pytest.fixture(scope="module")
def closing():
    resolved = resolve(SPECS / "closing_quote.circ")
    return resolved, build_picture(resolved, FAST)


@pytest.fixture(scope="module")
def small():
    return build_picture(resolve(SPECS / "closing_quote_small.circ"), ShowOptions(samples=20))


@pytest.fixture(scope="module")
def quote_head_page(quote_head, tmp_path_factory):
    path = tmp_path_factory.mktemp("show") / "quote_head.html"
    path.write_text(render_html(lay_out(build_picture(quote_head, FAST))), encoding="utf-8")
    return path


# ---- what the picture contains -------------------------------------------------------------------


def test_columns_follow_the_forward_pass():
    titles = [c.title for c in columns(2)]
    assert titles[0] == "inputs" and titles[-2:] == ["resid_post", "logits"]
    assert titles[1:6] == ["block 0 · resid_pre", "block 0 · attention q k v", "block 0 · attention z",
                           "block 0 · resid_mid", "block 0 · MLP neurons"]
    order = ["hook_tokens[3]", "blocks.0.hook_resid_pre[1]", "blocks.0.attn.hook_k[head=2, 0]", "blocks.0.attn.hook_z[head=0, 5]",
             "blocks.0.hook_resid_mid[1]", "blocks.0.mlp.hook_post[7]", "blocks.1.hook_resid_pre[0]",
             "blocks.1.attn.hook_q[head=3, 1]", "blocks.1.hook_resid_post[4]", "hook_logits[34]"]
    from circuitspec.engine.naming import parse_node_name
    assert [column_of(parse_node_name(n), 2) for n in order] == sorted(column_of(parse_node_name(n), 2) for n in order)
    assert len({column_of(parse_node_name(n), 2) for n in order}) == len(order)


def test_every_circuit_node_is_in_exactly_one_box(closing):
    resolved, picture = closing
    members = Counter(m for u in picture.units if u.kind in CIRCUIT_KINDS for m in u.members)
    assert set(members) == set(resolved.nodes)
    assert set(members.values()) == {1}
    assert len(picture.units) < 60, "a 2,304-node circuit must collapse into a legible number of boxes"


def test_boxes_sit_in_their_columns_left_to_right(closing):
    resolved, picture = closing
    used = sorted({column_of(m, 2) for u in picture.units for m in u.members})
    for u in picture.units:
        assert {used.index(column_of(m, 2)) for m in u.members} == {u.column}
        assert len({(m.hook, m.head) for m in u.members}) == 1, "a box holds channels of one hook and head"
    titles = [c.title for c in picture.columns]
    assert titles == [columns(2)[i].title for i in used]


def test_a_named_node_keeps_its_own_box_inside_a_collapsed_group(closing):
    _, picture = closing
    reader = next(u for u in picture.units if "reader" in u.names)
    assert reader.members == (NodeName("blocks.1.attn.hook_z", 19, 1),) and reader.names == ("reader", "copied_type")
    rest = next(u for u in picture.units if u.names == ("copied_type",))
    assert rest.collapsed and len(rest.members) == 31 and reader.members[0] not in rest.members
    assert rest.label == "blocks.1.attn.hook_z[head=1, 0:19, 20:32]"
    assert reader.description == "the channel that writes most to logit['\"'] - logit[\"'\"]"


def test_links_join_boxes_of_the_picture_and_weights_are_real(closing):
    resolved, picture = closing
    units = {u.id: u for u in picture.units}
    graph = resolved.context.graph
    for link in picture.links:
        assert link.source in units and link.target in units and link.source != link.target
        assert units[link.source].column < units[link.target].column, "wires run left to right"
        if link.kind == "weight":
            weights = [d["weight"] for a in units[link.source].members for b in units[link.target].members
                       if graph.has_edge(str(a), str(b)) and graph.edges[str(a), str(b)]["kind"] == "weight"
                       for d in [graph.edges[str(a), str(b)]]]
            assert len(weights) == link.count
            assert sum(abs(w) for w in weights) == pytest.approx(link.strength)
    declared = {(units[l.source].names, units[l.target].label) for l in picture.links if l.kind == "declared"}
    assert (("quote_type",), "blocks.1.attn.hook_z[head=1, 0:19, 20:32]") in declared


def test_weight_connections_are_capped_to_the_strongest(closing):
    resolved, full = closing
    capped = build_picture(resolved, ShowOptions(samples=20, max_edges=6))
    weights = [l for l in capped.links if l.kind == "weight"]
    every = sorted((l for l in full.links if l.kind == "weight"), key=lambda l: -l.strength)
    assert len(weights) == 6 < len(every)
    assert "6 strongest of" in capped.edge_note
    assert (every[0].source, every[0].target) in {(l.source, l.target) for l in weights}


def test_expand_draws_small_groups_channel_by_channel(quote_head):
    collapsed = build_picture(quote_head, ShowOptions(samples=20))
    assert [len(u.members) for u in collapsed.units] == [32, 32, 32, 32]
    expanded = build_picture(quote_head, ShowOptions(samples=20, expand=32))
    assert len(expanded.units) == 128 and not any(u.collapsed for u in expanded.units)
    # v channel j feeds z channel j of the same head: a structural link per channel
    value_links = [l for l in expanded.links if l.kind == "structural" and "value channel" in l.note]
    assert len(value_links) == 32


def test_activations_are_split_by_the_feature_the_claims_use(closing):
    _, picture = closing
    split = picture.split
    assert split.feature == "opening_quote" and split.labels == ("'\"'", "\"'\"") and sum(split.counts) == 60
    reader = next(u for u in picture.units if "reader" in u.names)
    double, single = reader.stats.per_value
    assert double.mean > 0 > single.mean, "the spec claims reader > 0 on double quotes"
    logit_double = next(u for u in picture.units if u.label == "hook_logits[34]")
    assert logit_double.stats.per_value[0].mean > logit_double.stats.per_value[1].mean
    assert all(u.stats is None for u in picture.units if u.kind in ("tokens", "positions"))


def test_compact_index_ranges():
    assert compact([0, 1, 2, 5, 7, 8], 10) == "0:3, 5, 7:9"
    assert compact(list(range(4)), 4) == "*"


# ---- layout and output ---------------------------------------------------------------------------


def test_layout_is_deterministic_and_boxes_do_not_overlap(quote_head):
    first = lay_out(build_picture(quote_head, FAST))
    second = lay_out(build_picture(quote_head, FAST))
    assert render_html(first) == render_html(second) and render_svg(first) == render_svg(second)
    boxes = first.boxes
    for b in boxes:
        assert 0 <= b.x and b.x + b.w <= first.width and 0 <= b.y and b.y + b.h <= first.height
    for a in boxes:
        for b in boxes:
            if a is not b and a.x == b.x:
                assert a.y + a.h <= b.y or b.y + b.h <= a.y


def test_wires_go_around_the_boxes_of_the_columns_they_skip(closing):
    layout = lay_out(closing[1])
    units = {u.id: u for u in closing[1].units}
    routed = 0
    for wire in layout.wires:
        c1, c2 = units[wire.link.source].column, units[wire.link.target].column
        skipped = [b for b in layout.boxes if c1 < b.unit.column < c2]
        numbers = [float(x) for x in re.findall(r"-?\d+\.?\d*", wire.path)]
        y1, y2 = numbers[1], numbers[-1]
        if wire.routed:
            routed += 1
            lane = float(re.search(r"L[\d.]+,([\d.]+)", wire.path).group(1))
            assert all(not (b.y <= lane <= b.y + b.h) for b in skipped)
        else:
            assert all(b.y + b.h < min(y1, y2) or b.y > max(y1, y2) for b in skipped)
    assert routed >= 2, "the declared edges from the inputs to block 1 must go around block 0"


def test_html_is_self_contained_and_well_formed(quote_head_page, closing):
    text = quote_head_page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert " src=" not in text and " href=" not in text and "@import" not in text
    root = ET.fromstring(text.split("\n", 1)[1])  # the doctype line aside, the page is XML
    assert root.tag == "html" and root.find(".//svg") is not None and root.find(".//script") is not None
    svg = render_svg(lay_out(closing[1]))
    tree = ET.fromstring(svg)
    assert tree.tag == "{http://www.w3.org/2000/svg}svg"
    assert svg.count("http") == 1, "the only URL in a standalone SVG is its namespace name"


def test_user_text_is_escaped(tmp_path):
    spec = tmp_path / "evil.circ"
    spec.write_text(
        'spec evil "</text><script>alert(1)</script> & ]]>"\n'
        'model "py-sparse-small"\ntask closing_quote\nablate mean over task\n'
        'group g = blocks.1.attn.hook_v[head=1, 0:4] "<b onmouseover=x()>\'quoted\' & \\"double\\"</b>"\n'
        'claim sufficient faithfulness >= 0.5\n')
    picture = build_picture(resolve(spec), ShowOptions(samples=10))
    for text in (render_html(lay_out(picture)), render_svg(lay_out(picture))):
        assert "<script>alert" not in text and "<b onmouseover" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; ]]&gt;" in text
        assert "&lt;b onmouseover=x()&gt;&#x27;quoted&#x27; &amp; &quot;double&quot;" in text
        ET.fromstring(text.split("\n", 1)[1] if text.startswith("<!DOCTYPE") else text)


# ---- the command line ----------------------------------------------------------------------------


def test_cli_writes_html_and_svg(tmp_path, capsys):
    html, svg = tmp_path / "circuit.html", tmp_path / "circuit.svg"
    code = main(["show", str(SPECS / "quote_head.circ"), "-o", str(html), "--svg", str(svg), "--samples", "40"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"wrote {html}" in out and f"wrote {svg}" in out
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "quote_head_queries" in page and "where to look: from inside a string" in page
    assert ET.fromstring(svg.read_text(encoding="utf-8")).tag.endswith("svg")


def test_cli_svg_output_by_extension(tmp_path, capsys):
    out = tmp_path / "only.svg"
    assert main(["show", str(SPECS / "quote_head.circ"), "-o", str(out), "--samples", "20", "--split", "none"]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<svg") and "by opening_quote" not in text


@pytest.mark.parametrize("body, code, expected", [
    ("node x = blocks.0.mlp.hook_post[1]\nedge x -> y\n", 2, "bad.circ:6:11: error[E102]"),
    ("node x = blocks.9.mlp.hook_post[1]\n", 2, "bad.circ:5:10: error[E503]"),
])
def test_cli_spec_errors_are_diagnostics(tmp_path, capsys, body, code, expected):
    spec = tmp_path / "bad.circ"
    spec.write_text('spec bad\nmodel "py-sparse-small"\ntask closing_quote\nablate mean over task\n' + body)
    assert main(["show", str(spec), "-o", str(tmp_path / "bad.html")]) == code
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "bad.html").exists()


def stderr(capsys) -> str:
    """Captured stderr with the console's line wrapping undone."""
    return " ".join(capsys.readouterr().err.split())


def test_cli_usage_and_model_errors(tmp_path, capsys):
    assert main(["show", str(tmp_path / "missing.circ")]) == 2
    assert "no such file" in stderr(capsys)
    assert main(["show", str(SPECS / "quote_head.circ"), "-o", str(tmp_path / "x.png")]) == 2
    assert "FILE.html or FILE.svg" in stderr(capsys)
    assert main(["show", str(SPECS / "quote_head.circ"), "--split", "opening_quot", "-o", str(tmp_path / "x.html")]) == 2
    assert "did you mean 'opening_quote'" in stderr(capsys)
    spec = tmp_path / "nomodel.circ"
    spec.write_text('spec m\nmodel "py-sparse-hug"\ntask closing_quote\nablate mean over task\n')
    assert main(["show", str(spec)]) == 2
    assert "nomodel.circ:2:1: error[E501]" in stderr(capsys)
    broken = tmp_path / "broken"
    shutil.copytree(ROOT / "circuitspec" / "checkpoints" / "py-sparse-small", broken)
    (broken / "model.safetensors").write_bytes(b"not a checkpoint")
    spec.write_text(f'spec m\nmodel "{broken}"\ntask closing_quote\nablate mean over task\n')
    assert main(["show", str(spec)]) == 3
    err = stderr(capsys)
    assert "error[E512]" in err and "Traceback" not in err


# ---- a real browser ------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")


def chromium(args, profile, timeout=90):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=timeout)


def png_rows(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the filtered scanlines of an 8-bit PNG (enough to tell a blank image from a picture)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            channels = {2: 3, 6: 4, 0: 1, 4: 2}[color]
            assert depth == 8
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * channels
    return width, height, [raw[i * stride + 1:(i + 1) * stride] for i in range(height)]


HOVER = """<script>
var box = document.querySelector('.unit[data-names="copied_type"] .box');
var r = box.getBoundingClientRect();
box.dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: r.x + 5, clientY: r.y + 5}));
</script>"""


@needs_chromium
def test_chromium_renders_the_nodes_and_hover_highlights(quote_head_page, tmp_path):
    page = tmp_path / "hover.html"  # the page, plus a test-only script that moves the mouse onto a box
    page.write_text(quote_head_page.read_text(encoding="utf-8").replace("</body>", HOVER + "</body>"), encoding="utf-8")
    result = chromium(["--dump-dom", page.as_uri()], tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    for name in ("quote_head_queries", "quote_head_keys", "quote_type", "copied_type"):
        assert f'data-names="{name}"' in dom
    assert 'data-node="blocks.1.attn.hook_q[head=1, *]"' in dom
    assert dom.count('data-tip="') >= 4, "the page's script ran and moved the tooltips"
    assert re.search(r'<svg[^>]*class="circuit[^"]*\bfocus\b', dom), "hovering a box focuses the picture"
    assert re.search(r'class="unit k-z collapsed hi"[^>]*data-names="copied_type"', dom)
    assert len(re.findall(r'class="w w-structural hi"', dom)) == 3, "its three wires are highlighted"
    tip = re.search(r'<div id="tip"[^>]*>(.*?)</div>', dom, re.S)
    assert tip and "copied_type" in tip.group(1) and "display: block" in tip.group(0)


@needs_chromium
def test_chromium_screenshot_is_not_blank(quote_head_page, tmp_path):
    shot = tmp_path / "shot.png"
    result = chromium([f"--screenshot={shot}", "--window-size=1240,640", quote_head_page.as_uri()], tmp_path / "profile")
    assert shot.exists(), result.stderr[-2000:]
    width, height, rows = png_rows(shot)
    assert (width, height) == (1240, 640)
    busy = sum(1 for row in rows if sum(1 for b in row if b) > 40)
    assert busy > height // 3, f"only {busy} of {height} rows have content"
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    chromium([f"--screenshot={tmp_path / 'blank.png'}", "--window-size=1240,640", blank.as_uri()], tmp_path / "profile")
    _, _, blank_rows = png_rows(tmp_path / "blank.png")
    assert sum(1 for row in blank_rows if sum(1 for b in row if b) > 40) < 5, "the check itself tells blank from drawn"


# Measures the page as a reader sees it, after the page's own script has fitted it to the window:
# where the circuit lies on screen, the on-screen font size of each box's visible name label, and the
# viewBox; then again after a wheel zoom, the "100%" button and the "0" key. Written into the DOM as JSON.
MEASURE = """<script>
(function () {
  var svg = document.querySelector('#picture svg');
  function rect(sel) { var r = svg.querySelector(sel).getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }
  function measure() {
    var shown = svg.querySelectorAll('.unit:not([display])');  // the other state of each group is hidden
    var sizes = Array.prototype.map.call(shown, function (g) {
      var lod = g.querySelector('.lod');
      var label = getComputedStyle(lod).display !== 'none' ? lod : g.querySelector('.name');
      return parseFloat(getComputedStyle(label).fontSize) * label.getScreenCTM().a;
    });
    // how far each box's visible label reaches past the box's right and bottom edges, in screen pixels
    var overflow = Array.prototype.map.call(shown, function (g) {
      var lod = g.querySelector('.lod');
      var label = (getComputedStyle(lod).display !== 'none' ? lod : g.querySelector('.name')).getBoundingClientRect();
      var box = g.querySelector('.box').getBoundingClientRect();
      return Math.max(label.right - box.right, label.bottom - box.bottom);
    });
    // the header (title, legend) is HTML outside the zoomed picture: its on-screen size at this zoom
    var title = document.querySelector('#head .title'), legend = document.querySelector('#head .legend');
    var head = [parseFloat(getComputedStyle(title).fontSize), title.getBoundingClientRect().height,
                parseFloat(getComputedStyle(legend).fontSize) * legend.getScreenCTM().a];
    return {window: [innerWidth, innerHeight], units: rect('.units'), wires: rect('.wires'), sizes: sizes, head: head,
            folded: circuitView.folded(), picture: svg.getBoundingClientRect().top,
            area: [svg.getBoundingClientRect().width, svg.getBoundingClientRect().height],
            overflow: Math.max.apply(null, overflow),
            far: svg.classList.contains('far'), viewBox: svg.getAttribute('viewBox'), scale: circuitView.scale()};
  }
  var out = {fit: measure()};
  svg.dispatchEvent(new WheelEvent('wheel', {deltaY: -300, clientX: 300, clientY: 200, bubbles: true, cancelable: true}));
  out.wheel = measure();
  document.getElementById('actual').click();
  out.actual = measure();
  document.dispatchEvent(new KeyboardEvent('keydown', {key: '0', bubbles: true}));
  out.key0 = measure();
  [['pointerdown', 700, 450], ['pointermove', 650, 420], ['pointermove', 600, 400], ['pointerup', 600, 400]].forEach(function (e) {
    svg.dispatchEvent(new PointerEvent(e[0], {clientX: e[1], clientY: e[2], button: 0, pointerId: 1, bubbles: true}));
  });
  out.drag = measure();
  var pre = document.createElement('pre');
  pre.id = 'measure';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def measure_page(picture, tmp_path, window="1400,900") -> dict:
    page = tmp_path / "measure.html"
    page.write_text(render_html(lay_out(picture)).replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    result = chromium(["--dump-dom", f"--window-size={window}", page.as_uri()], tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="measure">(.*?)</pre>', result.stdout, re.S)
    assert found, "the page's script or the measuring script failed"
    return json.loads(unescape(found.group(1)))


@needs_chromium
def test_chromium_opens_fitted_legible_and_zooms(tmp_path):
    picture = build_picture(resolve(SPECS / "closing_quote_small.circ"), ShowOptions(samples=30))
    m = measure_page(picture, tmp_path)
    fit = m["fit"]
    width, height = fit["window"]
    assert width == 1400 and 600 < height <= 900
    assert len(fit["sizes"]) == len(picture.units) >= 60
    for box in (fit["units"], fit["wires"]):  # the whole circuit is on screen
        left, top, right, bottom = box
        assert -0.5 <= left < right <= width + 0.5 and -0.5 <= top < bottom <= height + 0.5, box
    assert fit["scale"] < 0.5 and fit["far"], "a 70-box circuit is drawn smaller than life, with compact labels"
    assert fit["folded"] == [], "a circuit that fits the window by its width opens unfolded"
    title_px, title_h, legend_px = fit["head"]
    assert title_px == 22 and title_h >= 20 and legend_px == pytest.approx(12), \
        "the title and legend are drawn outside the zoomed picture, at their own size"
    assert fit["picture"] >= title_h, "the picture starts below the header"
    assert min(fit["sizes"]) >= 9, f"names are {min(fit['sizes']):.1f} px on screen after fit"
    assert fit["overflow"] <= 1, "every compact label stays inside its box"
    wheel = m["wheel"]
    assert wheel["viewBox"] != fit["viewBox"] and wheel["scale"] > fit["scale"], "the wheel zooms in"
    assert min(wheel["sizes"]) >= 9 and wheel["overflow"] <= 1
    actual = m["actual"]
    assert actual["scale"] == 1 and not actual["far"] and min(actual["sizes"]) == pytest.approx(12.5)
    assert [float(v) for v in actual["viewBox"].split()][2:] == fit["area"], "100%: one unit, one pixel"
    assert m["key0"]["viewBox"] == fit["viewBox"], "the 0 key fits again"
    before, after = ([float(v) for v in m[k]["viewBox"].split()] for k in ("key0", "drag"))
    k = fit["scale"]
    assert after[0] - before[0] == pytest.approx(100 / k, abs=0.05) and after[1] - before[1] == pytest.approx(50 / k, abs=0.05), \
        "dragging 100 px left and 50 px up moves the view as far right and down"
    assert after[2:] == before[2:], "dragging does not zoom"


def test_compact_labels_tell_apart_the_boxes_of_a_group(closing):
    from circuitspec.show.svg import column_label, compact_label
    _, picture = closing
    reader = next(u for u in picture.units if "reader" in u.names)
    assert compact_label(reader) == ("reader · copied_type · h1 z19", "h1 z19")
    rest = next(u for u in picture.units if u.names == ("copied_type",))
    assert compact_label(rest) == ("copied_type ×31", "×31")
    labels = [(u.column, compact_label(u)[0]) for u in picture.units]
    assert len(set(labels)) == len(labels), "no two boxes of a column look the same zoomed out"
    assert [column_label(c.title) for c in columns(2)][:6] == ["inputs", "resid_pre", "q k v", "z", "resid_mid", "MLP neurons"]


def test_a_shared_description_is_drawn_once(quote_head):
    layout = lay_out(build_picture(quote_head, ShowOptions(samples=20, expand=32)))  # 128 boxes, 2 groups described
    drawn = Counter(b.unit.description for b in layout.boxes if b.description)
    described = Counter(b.unit.description for b in layout.boxes if b.unit.description)
    assert len(drawn) == len(described) == 2 and set(drawn.values()) == {1} and set(described.values()) == {32}
    first = {}
    for b in layout.boxes:
        if b.unit.description:
            first.setdefault(b.unit.description, b)
    assert all(b.description for b in first.values()), "drawn in the group's first box"
    svg = render_svg(layout)
    for description in described:
        assert svg.count(f"“{description}”") == 32, "every box's tooltip still has it"


@needs_chromium
def test_chromium_opens_a_tall_circuit_folded(tmp_path):
    picture = build_picture(resolve(SPECS / "eq_vs_assign.circ"), ShowOptions(samples=20))
    layout = lay_out(picture)
    m = measure_page(picture, tmp_path)
    fit = m["fit"]
    assert fit["folded"] == sorted(g.id for g in layout.groups) and len(fit["folded"]) >= 10, \
        "a circuit far taller than the window opens with every group folded"
    assert len(fit["sizes"]) == len(lay_out(layout.expanded, order="keep", collapsed=fit["folded"]).boxes) < len(picture.units)
    assert min(fit["sizes"]) >= 9 and fit["overflow"] <= 1 and fit["head"][0] >= 10
    assert fit["scale"] > 0.3, "folded, it is fitted by its width, not its height"


# Folds and unfolds groups through the page's own controls and records, for each state, what is drawn:
# the visible boxes and group heads with their positions, and every wire (ends, path, width).
FOLD = """<script>
(function () {
  var svg = document.querySelector('#picture svg');
  function state() {
    var boxes = {}, heads = {};
    Array.prototype.forEach.call(svg.querySelectorAll('.unit:not([display])'), function (g) {
      boxes[g.id] = g.getAttribute('transform');
    });
    Array.prototype.forEach.call(svg.querySelectorAll('.ghead'), function (g) {
      heads[g.getAttribute('data-group')] = [g.getAttribute('transform'), g.querySelector('.gsign').textContent];
    });
    var wires = Array.prototype.map.call(svg.querySelectorAll('.wires .w'), function (w) {
      return [w.getAttribute('data-src'), w.getAttribute('data-dst'), w.getAttribute('d'), w.getAttribute('stroke-width'),
              w.getAttribute('class')];
    });
    return {boxes: boxes, heads: heads, wires: wires, height: svg.getAttribute('height'), folded: circuitView.folded()};
  }
  var out = {start: state()};
  var first = svg.querySelector('.ghead');
  first.dispatchEvent(new MouseEvent('click', {bubbles: true}));
  out.clicked = state();
  document.getElementById('fold-all').click();
  out.all = state();
  svg.querySelector('.unit.gbox:not([display])').dispatchEvent(new MouseEvent('click', {bubbles: true}));
  out.unfoldOne = state();
  document.getElementById('unfold-all').click();
  out.none = state();
  var pre = document.createElement('pre');
  pre.id = 'fold';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text)]


@needs_chromium
def test_chromium_folds_groups_as_the_python_layout_does(tmp_path):
    picture = build_picture(resolve(SPECS / "closing_quote_small.circ"), ShowOptions(samples=20))
    layout = lay_out(picture)
    page = tmp_path / "fold.html"
    page.write_text(render_html(layout).replace("</body>", FOLD + "</body>"), encoding="utf-8")
    result = chromium(["--dump-dom", "--window-size=1400,900", page.as_uri()], tmp_path / "profile")
    found = re.search(r'<pre id="fold">(.*?)</pre>', result.stdout, re.S)
    assert found, "the page's script or the folding script failed: " + result.stderr[-1000:]
    m = json.loads(unescape(found.group(1)))
    groups = [g.id for g in layout.groups]
    assert m["start"]["folded"] == [] and m["clicked"]["folded"] == ["g0"] and m["all"]["folded"] == sorted(groups)
    assert len(m["unfoldOne"]["folded"]) == len(groups) - 1 and m["none"]["folded"] == []
    diff = [(a, b) for a, b in zip(m["none"]["wires"], m["start"]["wires"]) if a != b]
    assert m["none"] == m["start"], ("unfolding everything restores the page as it opened", diff[:3])
    for key in ("start", "clicked", "all", "unfoldOne"):
        page_state = m[key]
        python = lay_out(layout.expanded, header=False, order="keep", collapsed=set(page_state["folded"]))
        assert set(page_state["boxes"]) == {b.unit.id for b in python.boxes}, key
        for b in python.boxes:
            assert numbers(page_state["boxes"][b.unit.id]) == [float(f"{b.x:.1f}"), float(f"{b.y:.1f}")], (key, b.unit.id)
        for h in python.group_heads:
            transform, sign = page_state["heads"][h.group.id]
            assert numbers(transform) == pytest.approx([h.x, h.y], abs=0.06) and sign == ("▸" if h.collapsed else "▾")
        assert float(page_state["height"]) == pytest.approx(python.height, abs=0.11)
        drawn = [(w[0], w[1]) for w in page_state["wires"]]
        assert drawn == [(w.link.source, w.link.target) for w in python.wires], key
        for w, p in zip(page_state["wires"], python.wires):
            assert numbers(w[2]) == numbers(p.path) and w[3] == f"{p.width:.2f}"
    assert len(m["all"]["boxes"]) < len(m["start"]["boxes"]) and float(m["all"]["height"]) < float(m["start"]["height"])


def test_folding_a_group_draws_one_box_and_merges_its_wires(small):
    layout = lay_out(small)
    assert layout.groups and not layout.collapsed and all(not h.collapsed for h in layout.group_heads)
    group = max(layout.groups, key=lambda g: len(g.units))
    folded = lay_out(layout.expanded, order="keep", collapsed={group.id})
    drawn = {b.unit.id: b for b in folded.boxes}
    assert group.id in drawn and not set(group.units) & set(drawn)
    assert len(folded.boxes) == len(layout.boxes) - len(group.units) + 1
    box = drawn[group.id].unit
    assert box.names == (group.name,) and box.collapsed
    assert sorted(box.members) == sorted(m for uid in group.units for m in small.unit(uid).members)
    assert next(h for h in folded.group_heads if h.group == group).collapsed
    inside = set(group.units)
    for kind in ("weight", "structural"):
        into = sum(l.strength for l in small.links if l.kind == kind and l.target in inside)
        assert sum(l.strength for l in folded.picture.links if l.kind == kind and l.target == group.id) == pytest.approx(into)
    assert not any(l.source in inside or l.target in inside for l in folded.picture.links)
    pairs = [(l.source, l.target, l.kind) for l in folded.picture.links]
    assert len(pairs) == len(set(pairs)), "the group's wires to one box are merged into one"
    every = lay_out(layout.expanded, order="keep", collapsed={g.id for g in layout.groups})
    assert every.height < layout.height and len(every.boxes) < len(layout.boxes)
    assert {b.unit.id for b in every.boxes} >= {g.id for g in layout.groups}


@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS.glob("*.circ")))
def test_ordering_does_not_add_crossings(spec):
    from circuitspec.show.crossings import count_crossings
    picture = build_picture(resolve(SPECS / spec), ShowOptions(samples=8))
    channel, ordered = lay_out(picture, order="channel"), lay_out(picture)
    assert count_crossings(ordered.wires) <= count_crossings(channel.wires)
    assert sorted(u.id for u in ordered.expanded.units) == sorted(u.id for u in picture.units)
    for g in ordered.groups:  # each group's boxes stay together, so a folded group takes their place
        ids = [u.id for u in ordered.expanded.units if u.column == g.column]
        at = [ids.index(uid) for uid in g.units]
        assert at == list(range(at[0], at[0] + len(at)))
