"""The daily summary as one self-contained HTML file (``sipguard report``), for those who mail it.

Everything is in the file: the style sheet inline, the charts inline SVG drawn here, no script,
no font, no image, nothing fetched (a Content-Security-Policy of ``default-src 'none'`` says
so to the mail client or browser that opens it). Every text that comes from a record (trunk
names, rule names, reason codes, verstat values: all of them reach us from the network or from
operator files) is escaped and cut to a bounded length before it is written.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence

from sipguard.records.summary import NO_ATTEST, Summary

MAX_LABEL = 60            # characters of a label shown (the full value stays in the title)
TOP = 10
COLORS = {"forward": "#2e7d32", "reject": "#c62828"}
OTHER_COLOR = "#607d8b"
ATTEST_COLORS = {"A": "#2e7d32", "B": "#f9a825", "C": "#ef6c00", NO_ATTEST: "#90a4ae"}

CSS = """
body{font:14px/1.4 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#212121;margin:24px;
max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;
padding-bottom:4px}
.sub{color:#616161;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:22px}
.card span{color:#616161;font-size:12px}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #e0e0e0;padding:4px 8px;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f5f5f5}
svg text{font:11px sans-serif;fill:#424242}
.cols{display:flex;flex-wrap:wrap;gap:32px}
"""


def esc(text: object, limit: int = MAX_LABEL) -> str:
    """A value from a record, as HTML text: escaped (quotes too), at most ``limit`` characters."""
    value = str(text)
    if len(value) > limit:
        value = value[:limit - 1] + "\u2026"
    return html.escape(value, quote=True)


def utc(t: float, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime(fmt)


def pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "-"


def hbars(rows: Sequence[tuple[str, int]], total: int, colors: dict[str, str] | None = None) -> str:
    """Horizontal bars, one per (label, count), scaled to the largest; the share of ``total``."""
    if not rows:
        return "<p>none</p>"
    top = max(count for _, count in rows) or 1
    label_w, bar_w, row_h = 220, 360, 20
    height = row_h * len(rows) + 4
    parts = [f'<svg width="{label_w + bar_w + 130}" height="{height}" role="img">']
    for i, (label, count) in enumerate(rows):
        y = i * row_h + 2
        width = max(1.0, bar_w * count / top) if count else 0.0
        color = (colors or {}).get(label, OTHER_COLOR)
        parts.append(f'<g><title>{esc(label, 1000)}: {count}</title>'
                     f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{esc(label, 32)}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{width:.1f}" height="{row_h - 6}" fill="{color}"/>'
                     f'<text x="{label_w + width + 6:.1f}" y="{y + 14}">{count} ({pct(count, total)})</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def hourly_chart(s: Summary) -> str:
    """Calls per hour, stacked by action (forward below, reject above), UTC hours on the axis."""
    hours = s.hourly()
    if not hours:
        return "<p>no hours</p>"
    actions = sorted({a for _, per in hours for a in per}, key=lambda a: (a != "forward", a))
    peak = max((sum(per.values()) for _, per in hours), default=0) or 1
    left, chart_h, bottom = 50, 200, 36
    bar = max(2.0, min(28.0, 960.0 / len(hours)))
    width = left + bar * len(hours) + 10
    parts = [f'<svg width="{width:.0f}" height="{chart_h + bottom + 10}" role="img">',
             f'<text x="{left - 6}" y="14" text-anchor="end">{peak}</text>',
             f'<text x="{left - 6}" y="{chart_h + 4}" text-anchor="end">0</text>',
             f'<line x1="{left}" y1="{chart_h + 0.5}" x2="{width - 10:.0f}" y2="{chart_h + 0.5}" stroke="#9e9e9e"/>']
    every = max(1, round(len(hours) / 12))
    for i, (hour, per) in enumerate(hours):
        x = left + i * bar
        y = float(chart_h)
        tip = ", ".join(f"{esc(a, 20)} {per[a]}" for a in actions if per[a]) or "no calls"
        parts.append(f'<g><title>{utc(hour)} UTC: {tip}</title>')
        for action in actions:
            h = chart_h * per[action] / peak
            if h <= 0:
                continue
            y -= h
            parts.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
                         f'fill="{COLORS.get(action, OTHER_COLOR)}"/>')
        parts.append("</g>")
        if i % every == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{chart_h + 16}" text-anchor="middle">'
                         f'{utc(hour, "%H:%M")}</text>')
    legend_x = left
    for action in actions:
        parts.append(f'<rect x="{legend_x}" y="{chart_h + 24}" width="10" height="10" '
                     f'fill="{COLORS.get(action, OTHER_COLOR)}"/><text x="{legend_x + 14}" '
                     f'y="{chart_h + 33}">{esc(action, 20)}</text>')
        legend_x += 90
    parts.append("</svg>")
    return "".join(parts)


def table(head: Sequence[str], rows: Sequence[Sequence[object]], numeric_from: int = 1) -> str:
    if not rows:
        return "<p>none</p>"
    cells = "".join(f'<th{" class=n" if i >= numeric_from else ""}>{esc(h)}</th>' for i, h in enumerate(head))
    body = []
    for row in rows:
        body.append("<tr>" + "".join(f'<td{" class=n" if i >= numeric_from else ""}>{esc(v)}</td>'
                                     for i, v in enumerate(row)) + "</tr>")
    return f"<table><tr>{cells}</tr>{''.join(body)}</table>"


def render(s: Summary, title: str = "sipguard daily report", generated: float | None = None,
           instance: str | None = None) -> str:
    """The whole report, one HTML document."""
    total = s.calls
    rejected = s.actions.get("reject", 0)
    passed = s.verstats.get("TN-Validation-Passed", 0)
    failed = s.verstats.get("TN-Validation-Failed", 0)
    cards = [("calls", total), ("forwarded", s.actions.get("forward", 0)), ("rejected", rejected),
             ("rejected share", pct(rejected, total)), ("verified (passed)", passed),
             ("verification failed", failed), ("signed by us", s.signed)]
    verstats = sorted(s.verstats)
    actions = sorted(s.actions, key=lambda a: (a != "forward", a))
    matrix = [[verstat, *(s.action_verstat[(a, verstat)] for a in actions), s.verstats[verstat]]
              for verstat in verstats]
    ups = s.top_upstreams(TOP)
    up_rows = [[u.trunk, u.calls, u.rejected, pct(u.rejected, u.calls), u.attest_c, u.failed] for u in ups]
    attest = sorted(s.attest.items(), key=lambda kv: (kv[0] == NO_ATTEST, kv[0]))
    sub = f"{utc(s.since)} to {utc(s.until)} UTC"
    if instance:
        sub += f" \u00b7 {esc(instance)}"
    if generated is not None:
        sub += f" \u00b7 made {utc(generated)} UTC"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # nothing may be fetched: no script, no remote style, font or image
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{esc(title, 200)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(title, 200)}</h1><p class=sub>{sub}</p>",
        '<div class="cards">' + "".join(f'<div class="card"><b>{esc(v)}</b><span>{esc(k)}</span></div>'
                                        for k, v in cards) + "</div>",
        "<h2>Calls per hour (UTC)</h2>", hourly_chart(s),
        '<div class="cols"><div>',
        "<h2>Calls by action</h2>", hbars([(a, s.actions[a]) for a in actions], total, COLORS),
        "<h2>Attestation mix</h2>", hbars(attest, total, ATTEST_COLORS),
        "</div><div>",
        "<h2>Verification results</h2>", hbars(s.verstats.most_common(TOP), total),
        "<h2>Responses sent</h2>",
        table(["status", "calls"], [[status, n] for status, n in sorted(s.statuses.items())]),
        "</div></div>",
        "<h2>Calls by action and verification result</h2>",
        table(["verstat", *actions, "all"], matrix),
        "<h2>Top rules</h2>", hbars(s.rules.most_common(TOP), total),
        "<h2>Top upstreams by rejects</h2>",
        table(["trunk", "calls", "rejected", "rejected share", "attestation C", "verification failed"], up_rows),
        "<h2>Top reasons</h2>", hbars(s.reasons.most_common(TOP), total),
        "</body></html>",
    ]
    return "\n".join(out) + "\n"


__all__ = ["render"]
