"""``aipctl audit report --html``: one self-contained page, readable with JavaScript off.

Charts are drawn by pygal (the optional ``report`` extra, so the proxy's install stays small)
as inline SVG; pygal's inline scripts (tooltips only) are removed, so the page loads nothing,
runs nothing and shows the same figures in plain tables under each chart. Every text from
the log is HTML-escaped: tool names and agent ids are attacker-reachable.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Final

from aip.approver.ctl import safe_files
from aip.approver.ctl.report import BUCKETS, OUTCOMES, Figures

OUTCOME_COLOURS: Final = ("#3a8f4b", "#c0392b", "#d9822b", "#7f8c8d")  # by OUTCOMES
_SCRIPT: Final = re.compile(r"<script\b.*?</script>", re.DOTALL | re.IGNORECASE)
_STYLE: Final = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:2em} .warn{color:#a40;font-weight:bold}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:2px 8px}
td.n{text-align:right} figure{margin:0} figure svg{width:100%;height:auto}
"""


class ChartsUnavailable(RuntimeError):
    """pygal is not installed: the page would have no charts."""


def _chart(kind: str, title: str, colours: tuple[str, ...] = (), **options: Any) -> Any:
    try:
        import pygal
        from pygal.style import DefaultStyle
    except ImportError as exc:
        raise ChartsUnavailable("charts need pygal: pip install 'aip-approval[report]'") from exc
    if colours:
        options["style"] = DefaultStyle(colors=colours)
    return getattr(pygal, kind)(
        js=[], disable_xml_declaration=True, width=900, height=360, title=title,
        legend_at_bottom=True, truncate_label=-1, **options,
    )  # fmt: skip


def _svg(chart: Any) -> str:
    return _SCRIPT.sub("", chart.render(is_unicode=True))


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{v}</td>' if isinstance(v, int) else f"<td>{html.escape(str(v))}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def render(f: Figures) -> str:
    days = sorted(f.asks_per_day)
    agents: dict[str, int] = {}
    for day in days:
        for agent, n in f.asks_per_day[day].items():
            agents[agent] = agents.get(agent, 0) + n
    top_agents = sorted(agents, key=lambda a: -agents[a])[:8]
    asks = _chart("StackedBar", "Asks per day, per agent")
    asks.x_labels = days
    for agent in top_agents:
        asks.add(agent, [f.asks_per_day[d][agent] for d in days])

    times = _chart("Bar", "Human response time", show_legend=False)
    times.x_labels = [label for _, label in BUCKETS]
    times.add("asks", [f.response[label] for _, label in BUCKETS])

    tools = sorted(f.per_tool, key=lambda t: -sum(f.per_tool[t].values()))[:15]
    outcomes = _chart("HorizontalStackedBar", "Outcomes per tool", OUTCOME_COLOURS)
    outcomes.x_labels = tools
    for o in OUTCOMES:
        outcomes.add(o, [f.per_tool[t][o] for t in tools])

    fatigue = _chart(
        "Pie", "Approvals answered in under 1.5 s", ("#d9822b", "#3a8f4b"), inner_radius=0.5
    )
    fatigue.add("under 1.5 s", f.fast_approvals)
    fatigue.add("1.5 s or more", f.approvals - f.fast_approvals)

    share = f"{100 * f.fatigue_share:.0f}%"
    warn = (
        '<p class="warn">A third or more of approvals came faster than a call can be read: '
        "approval fatigue. Narrow the ask rules (aipctl policy suggest) or read before you "
        "allow.</p>"
        if f.fatigue_share >= 0.3
        else ""
    )
    suggestions = [
        [s.action.value, s.tool, s.evidence["approvals"], s.why] for s in f.suggestions
    ] or [["-", "none", 0, ""]]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width">',
        # No script may run and nothing may load: the page is the same with JavaScript off.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        f"<title>aip audit report since {html.escape(f.since)}Z</title><style>{_STYLE}</style>",
        "</head><body>",
        f"<h1>aip audit report</h1><p>Since {html.escape(f.since)}Z: {f.records} decisions"
        + (f" ({f.unreadable} unreadable lines skipped)" if f.unreadable else "")
        + ".</p>",
        f"<h2>Asks per day</h2><figure>{_svg(asks)}</figure>",
        _table(
            ["day", *top_agents], [[d, *(f.asks_per_day[d][a] for a in top_agents)] for d in days]
        ),
        f"<h2>Response times</h2><figure>{_svg(times)}</figure>",
        _table([label for _, label in BUCKETS], [[f.response[label] for _, label in BUCKETS]]),
        f"<h2>Approval fatigue: {share}</h2><figure>{_svg(fatigue)}</figure>",
        f"<p>{f.fast_approvals} of {f.approvals} approvals were answered in under 1.5 s.</p>",
        warn,
        f"<h2>Outcomes per tool</h2><figure>{_svg(outcomes)}</figure>",
        _table(["tool", *OUTCOMES], [[t, *(f.per_tool[t][o] for o in OUTCOMES)] for t in tools]),
        f"<h2>Remembered decisions used: {f.granted}</h2>",
        "<h2>Rules that would have saved asks</h2>",
        _table(["action", "tool", "approvals", "learned from"], suggestions),
        "<p>Review them with <code>aipctl policy suggest</code>.</p></body></html>",
    ]
    return "\n".join(parts)


def write_html(f: Figures, path: Path) -> None:
    safe_files.atomic_replace(path, render(f).encode("utf-8"), 0o600)
