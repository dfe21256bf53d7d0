"""Charts as inline SVG, drawn on the server by pygal (PyPI): no chart code runs in the browser, nothing is
fetched from elsewhere (pygal's tooltip script, which it would load from a CDN, is switched off)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pygal
from markupsafe import Markup
from pygal.style import Style

STYLE = Style(
    background="white", plot_background="white", foreground="#1b1f24", foreground_strong="#1b1f24",
    foreground_subtle="#57606a", font_family="system-ui, sans-serif", label_font_size=12,
    major_label_font_size=12, legend_font_size=13, title_font_size=16,
    colors=("#0b5cad", "#e07a10", "#2e8540", "#b42318", "#6f42c1", "#8c959f"),
)


def _config(chart: pygal.graph.graph.Graph, title: str, labels: Sequence[str], percent: bool) -> None:
    chart.config.js = []  # no script from a CDN
    chart.config.disable_xml_declaration = True
    chart.title = title
    chart.x_labels = [label if len(label) <= 28 else label[:27] + "…" for label in labels]
    if percent:
        chart.value_formatter = lambda v: f"{v:.1%}" if v is not None else ""


_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)


def _render(chart: pygal.graph.graph.Graph, description: str) -> Markup:
    # pygal writes its tooltip configuration as an inline script: useless without its tooltip script, and the
    # console's CSP would refuse it anyway.
    svg = _SCRIPT.sub("", chart.render(is_unicode=True))
    # role=img with a text alternative: the table beside every chart holds the same numbers.
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{Markup.escape(description)}" ', 1)
    return Markup(svg)  # pygal escapes the labels and values it writes into the SVG


def bars(title: str, labels: Sequence[str], series: dict[str, Sequence[float | None]], percent: bool = True,
         description: str = "") -> Markup:
    chart = pygal.Bar(style=STYLE, width=900, height=420, x_label_rotation=20 if len(labels) > 4 else 0,
                      legend_at_bottom=True, truncate_legend=-1, print_values=False)
    _config(chart, title, labels, percent)
    for name, values in series.items():
        chart.add(name, list(values))
    return _render(chart, description or title)


def lines(title: str, labels: Sequence[str], series: dict[str, Sequence[float | None]], percent: bool = True,
          description: str = "") -> Markup:
    chart = pygal.Line(style=STYLE, width=900, height=380, x_label_rotation=20 if len(labels) > 8 else 0,
                       legend_at_bottom=True, show_minor_x_labels=len(labels) <= 16, truncate_legend=-1)
    _config(chart, title, labels, percent)
    if len(labels) > 16:
        chart.x_labels_major = list(chart.x_labels)[:: max(1, len(labels) // 8)]
    for name, values in series.items():
        chart.add(name, list(values))
    return _render(chart, description or title)
