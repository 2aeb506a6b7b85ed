"""Bar charts as inline SVG, drawn on the server with pygal, for pages that must work without
JavaScript and under a strict Content-Security-Policy (no inline script or style).

pygal's SVG carries a `<script>` (its tooltip configuration), a `<style>` and `style=""`
attributes; all three are removed here, and the look comes from the static style sheets
(`charts.css` in the staff and citizen static folders, the same rules). The SVG is an image with
a name (`role="img"`, `aria-label`); the page shows the same figures in a table next to it, the
accessible form of the chart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pygal
from markupsafe import Markup, escape

# Removed: pygal's script and style (in <defs>), comments, inline styles, and the legend's
# ids, which would repeat with every chart of a page; then the root's own id.
_DROP = (re.compile(r"<defs>.*?</defs>", re.S), re.compile(r"<!--.*?-->", re.S),
         re.compile(r' style="[^"]*"'), re.compile(r' id="activate-serie-\d+"'),
         re.compile(r'<svg [^>]*?( id="[^"]*")'))
_SVG_OPEN = re.compile(r"^<svg ")


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    description: str
    svg: Markup


def bar_chart(title: str, description: str, x_labels: Sequence[str],
              series: Mapping[str, Sequence[float | None]], *, y_title: str = "",
              no_data: str = "No data", counts: bool = False) -> Chart:
    """A bar chart of `series` (name -> one value per label; None: no bar); `counts` labels the
    y axis with whole numbers only."""
    chart = pygal.Bar(js=[], css=[], disable_xml_declaration=True, width=720, height=320,
                      explicit_size=False, show_legend=len(series) > 1, legend_at_bottom=True,
                      title=title, y_title=y_title or None, no_data_text=no_data,
                      print_values=False, x_label_rotation=0, truncate_legend=40)
    chart.x_labels = list(x_labels)
    if counts:
        chart.y_labels = _whole_numbers(series)
    for name, values in series.items():
        chart.add(name, list(values))
    # pygal builds the SVG with ElementTree, which escapes every label and title it is given.
    svg = Markup(_clean(chart.render(is_unicode=True), title))  # noqa: S704
    return Chart(title, description, svg)


def _whole_numbers(series: Mapping[str, Sequence[float | None]]) -> list[int]:
    top = max((int(v) for values in series.values() for v in values if v is not None),
              default=0)
    step = max(1, -(-top // 8))  # at most about eight lines
    return list(range(0, top + step, step))


def _clean(svg: str, label: str) -> str:
    """pygal's SVG without script, style or fixed id, named as an image."""
    for pattern in _DROP[:4]:
        svg = pattern.sub("", svg)
    svg = _DROP[4].sub(lambda m: m.group(0).replace(m.group(1), ""), svg, count=1)
    name = escape(label)
    return _SVG_OPEN.sub(f'<svg role="img" aria-label="{name}" focusable="false" ', svg,
                         count=1)
