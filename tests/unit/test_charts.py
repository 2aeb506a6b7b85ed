"""Charts as inline SVG (hub.web.charts): nothing a strict CSP would block (no script, no
style element or attribute), named as an image, labels escaped, whole-number axes for counts."""

from __future__ import annotations

import re

from hub.web.charts import bar_chart

HOSTILE = '<script>alert("x")</script>'


def test_svg_has_no_script_or_inline_style_and_a_name() -> None:
    chart = bar_chart(f"Received {HOSTILE}", "d", ["2026-10", "2026-11"],
                      {"Roads": [3, 5], HOSTILE: [1, None]})
    svg = str(chart.svg)
    assert svg.startswith('<svg role="img" aria-label="Received &lt;script&gt;')
    for banned in ("<script", "<style", " style=", "<defs", "<!--", ' id="'):
        assert banned not in svg, banned
    assert HOSTILE not in svg and "&lt;script&gt;" in svg


def test_counts_get_whole_number_labels() -> None:
    svg = str(bar_chart("n", "d", ["a", "b"], {"x": [3, 17]}, counts=True).svg)
    labels = re.findall(r'<text x="-5" y="[^"]+" class="[^"]*">([^<]+)</text>', svg)
    assert labels and all(label.isdigit() for label in labels), labels
    assert labels[0] == "0" and int(labels[-1]) >= 17  # the axis reaches the highest bar
