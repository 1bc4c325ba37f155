"""The night's house report as one self-contained, printable HTML page (gate/house/report.py's
figures): no script, no file beside it, the charts inline as SVG drawn here, every text escaped.
Long lists are cut at ROWS on the page (the JSON carries them all)."""

from __future__ import annotations

import html
import time
from typing import Optional

ROWS = 300
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
W, H, LEFT, BOTTOM, TOP = 720, 280, 48, 28, 12


def _e(v) -> str:
    return html.escape("" if v is None else str(v))


def _hhmm(text: Optional[str]) -> str:
    return text[11:16] if text else "–"


def _clock(ms: int) -> str:
    return time.strftime("%H:%M", time.localtime(ms / 1000))


def _nice(step: float) -> int:
    """1, 2 or 5 times a power of ten, at least `step`."""
    p = 1
    while True:
        for m in (1, 2, 5):
            if m * p >= step:
                return m * p
        p *= 10


def arrival_chart(fig: dict) -> str:
    """Cumulative admissions per door and in all, with the curtain marked; an SVG element."""
    c = fig["curve"]
    if not c["total"]:
        return '<p class="dim">No admissions.</p>'
    # each line starts at nought a minute before the first admission (one minute alone is still a line)
    step = c["step"]
    start, n = c["start"] - step, len(c["total"]) + 1
    curtain = fig.get("curtain_ms")
    end = start + (n - 1) * step
    lo, hi = start, max(end, curtain or end, start + step)
    if curtain is not None:
        lo = min(lo, curtain)
    unit = _nice(max(c["total"][-1], 1) / 4)
    top = unit * -(-max(c["total"][-1], 1) // unit)   # the axis ends on a round number

    def x(ms: float) -> float:
        return LEFT + (W - LEFT - 8) * (ms - lo) / (hi - lo)

    def y(v: float) -> float:
        return TOP + (H - TOP - BOTTOM) * (1 - v / top)

    def line(series: list, colour: str, width: float) -> str:
        pts = " ".join(f"{x(start + i * step):.1f},{y(v):.1f}" for i, v in enumerate([0] + series))
        return f'<polyline fill="none" stroke="{colour}" stroke-width="{width}" points="{pts}"/>'
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="arrivals per door" '
             f'xmlns="http://www.w3.org/2000/svg">']
    for k in range(int(top // unit) + 1):   # y grid
        v = k * unit
        parts.append(f'<line x1="{LEFT}" x2="{W - 8}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                     f'<text x="{LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{round(v)}</text>')
    tick = 15 * 60_000 if hi - lo <= 4 * 3600_000 else 60 * 60_000
    t = (lo // tick + 1) * tick
    while t <= hi:
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{TOP}" y2="{H - BOTTOM}" stroke="#eee"/>'
                     f'<text x="{x(t):.1f}" y="{H - 10}" text-anchor="middle">{_clock(t)}</text>')
        t += tick
    parts.append(line(c["total"], "#222", 2.5))
    for i, (gate, series) in enumerate(c["doors"].items()):
        parts.append(line(series, COLOURS[i % len(COLOURS)], 1.6))
    if curtain is not None:
        parts.append(f'<line x1="{x(curtain):.1f}" x2="{x(curtain):.1f}" y1="{TOP}" y2="{H - BOTTOM}" '
                     f'stroke="#b00" stroke-dasharray="5,4"/><text x="{x(curtain) - 4:.1f}" y="{TOP + 10}" '
                     f'text-anchor="end" fill="#b00">curtain {_clock(curtain)}</text>')
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{COLOURS[i % len(COLOURS)]}"></i>{_e(g)}</span>'
                     for i, g in enumerate(c["doors"])) + '<span><i style="background:#222"></i>all doors</span>'
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def known_bar(k: dict) -> str:
    """Patrons known by name / by a patron id only / not at all, as one bar."""
    n = k["patrons"] or 1
    named, idonly, anon = k["by_name"], max(0, k["with_patron_id"] - k["by_name"]), k["anonymous"]
    segs, x = [], 0.0
    for v, colour in ((named, "#2ca02c"), (idonly, "#98df8a"), (anon, "#bbb")):
        w = 600 * v / n
        segs.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="22" fill="{colour}"/>')
        x += w
    return (f'<svg class="bar" viewBox="0 0 600 22" xmlns="http://www.w3.org/2000/svg">{"".join(segs)}</svg>'
            f'<p>{named:,} known by name · {k["with_patron_id"]:,} with a patron id · <b>{anon:,} anonymous</b> '
            f'(walk-up and anonymous tickets: the relationships still to be made)</p>')


def _table(head: list[str], rows: list[list], empty: str) -> str:
    if not rows:
        return f'<p class="dim">{_e(empty)}</p>'
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows[:ROWS])
    more = f'<p class="dim">… and {len(rows) - ROWS:,} more (all of them in the JSON: --json)</p>' if len(rows) > ROWS else ""
    return f'<table><tr>{"".join(f"<th>{_e(h)}</th>" for h in head)}</tr>{body}</table>{more}'


CSS = """
 body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:#111; margin:24px auto;
        max-width:760px; }
 h1 { font-size:22px; margin:0 0 2px; } h2 { font-size:15px; margin:22px 0 8px; border-bottom:1px solid #ccc; }
 .dim { color:#666; } .tiles { display:grid; grid-template-columns:repeat(4,1fr); gap:8px; }
 .tiles div { border:1px solid #ddd; border-radius:6px; padding:6px 8px; } .tiles b { display:block; font-size:20px; }
 table { border-collapse:collapse; width:100%; } td, th { text-align:left; padding:3px 6px; border-bottom:1px solid #eee; }
 svg.chart { width:100%; height:auto; font-size:11px; fill:#444; } svg.bar { width:100%; height:22px; }
 .legend span { margin-right:14px; }
 .legend i { display:inline-block; width:12px; height:3px; margin-right:4px; vertical-align:middle; }
 section { break-inside:avoid; } @page { size:A4; margin:14mm; } @media print { body { margin:0; } }
"""


def _sections(fig: dict) -> list[tuple[str, str]]:
    """(heading, body) of each part of the page after the chart."""
    hi = fig["house_in"]
    doors = [[g, d["admitted"], d["peak_per_minute"], _hhmm(d["peak_at"]), d["annulled"], d["rejected"]]
             for g, d in fig["doors"].items()]
    when = [["half in", _hhmm(hi["half"])], ["90 % in", _hhmm(hi["ninety"])], ["95 % in", _hhmm(hi["ninety_five"])],
            ["last in", _hhmm(hi["last"])]]
    if "by_curtain" in hi:
        when += [["in by the curtain", hi["by_curtain"]], ["in after the curtain", hi["after_curtain"]]]
    reasons = [[r.replace("_", " "), n] for r, n in fig["rejected_by_reason"].items()]
    conflicts = [[c["ticket"], f"{c['first_gate']} {_clock(c['first_ts'])}", f"{c['gate']} {_clock(c['ts'])}"]
                 for c in fig["conflicts"]]
    notable = [[_hhmm(a["time"]), a["gate"], a["holder"] or a["ticket"], a["seat"], ", ".join(a["tags"])]
               for a in fig["notable"]]
    first = [[_hhmm(a["time"]), a["gate"], a["holder"], a["patron"]] for a in fig["first_time"]]
    absent = [[a["ticket"], a["holder"], a["seat"]] for a in fig["no_show_list"]]
    return [
        ("Doors", _table(["door", "admitted", "peak a minute", "at", "annulled", "rejected"], doors, "No doors.")),
        ("When the house was in", _table(["", ""], when, "")),
        ("Known and anonymous", known_bar(fig["known"])),
        ("Rejections by reason", _table(["reason", "scans"], reasons, "No rejections.")),
        ("Conflicts (admitted twice)", _table(["ticket", "first", "again"], conflicts, "No conflicts.")),
        ("Notable arrivals", _table(["time", "door", "name", "seat", "tags"], notable, "None.")),
        ("First-time visitors", _table(["time", "door", "name", "patron"], first,
                                       "None known (first visits need a patron id on the ticket list).")),
        ("No-shows", _table(["ticket", "name", "seat"], absent, "None on the ticket list.")),
    ]


def page(fig: dict) -> str:
    """The whole report page."""
    rate = f" ({100 * fig['no_shows'] / fig['sold']:.0f} %)" if fig["sold"] and fig["no_shows"] is not None else ""
    tiles = [("sold", fig["sold"]), ("came", fig["came"]), ("no-shows", f"{fig['no_shows']}{rate}"),
             ("first-time visitors", len(fig["first_time"])), ("notable arrivals", len(fig["notable"])),
             ("rejected", fig["rejected"]), ("annulled", fig["annulled"]), ("conflicts", len(fig["conflicts"]))]
    source = f" ({fig['curtain_from']})" if fig["curtain_from"] else ""
    facts = (f"{fig['venue']} · curtain {_hhmm(fig['curtain'])}{source} · capacity {fig['capacity'] or '–'} · "
             f"made {fig['generated']}")
    tile_html = "".join(f"<div><b>{_e(v if v is not None else '–')}</b>{_e(k)}</div>" for k, v in tiles)
    parts = "".join(f"<section><h2>{_e(h)}</h2>{body}</section>" for h, body in _sections(fig))
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>House report · {_e(fig['event'])}</title><style>{CSS}</style></head><body>\n"
            f"<h1>House report · {_e(fig['event'])}</h1><p class=\"dim\">{_e(facts)}</p>\n"
            f'<section class="tiles">{tile_html}</section>\n'
            f"<section><h2>Arrivals per door</h2>{arrival_chart(fig)}</section>\n{parts}\n</body></html>\n")
