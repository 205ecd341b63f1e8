"""The page's HTML, rendered on the server: no build step, no script, charts as inline SVG.

Every value from the warehouse or Salesforce goes through ``html.escape`` (``_e``); numbers carry
``data-k`` attributes naming the field they show, for tests and for people reading the source.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from sfsync import status

#: (next scheduled run, paused) of a DAG, as Airflow knows it.
Schedule = tuple[dt.datetime | None, bool]

NOTICES = {
    "sync": "A run was queued. It starts as soon as the scheduler picks it up.",
    "sync_paused": "A run was queued. The DAG is paused: the run starts once it is unpaused.",
    "retry": "The error is due now: the next run retries it.",
    "dismiss": "The error was dismissed.",
}
STATES = {  # sfsync.sync_runs.status -> (the state in words, colour)
    "merged": ("succeeded", "ok"),
    "pushed": ("succeeded", "ok"),
    "reconciled": ("succeeded", "ok"),
    "failed": ("failed", "bad"),
    "abandoned": ("abandoned", "bad"),
    "skipped": ("skipped", "warn"),
    "waiting": ("waiting for a full load", "warn"),
    "extracting": ("running", "info"),
    "skipping": ("running", "info"),
    "pushing": ("running", "info"),
    "reconciling": ("running", "info"),
}
HEALTH = {"healthy": "ok", "late": "warn", "failing": "bad"}
WATCHER_STATES = {"following": "ok", "failing": "warn", status.NOT_RUNNING: "warn"}
#: Where each event watcher's wakes come from, in a word (the overview's column is narrow).
SOURCES = {"change_events": "Salesforce", "warehouse_edits": "warehouse"}
IN, OUT = "#2563eb", "#9333ea"

CSS = """
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#fff; --soft:#f9fafb;
  --ok:#15803d; --ok-bg:#dcfce7; --warn:#b45309; --warn-bg:#fef3c7; --bad:#b91c1c; --bad-bg:#fee2e2;
  --info:#1d4ed8; --info-bg:#dbeafe; }
* { box-sizing: border-box; }
body { margin: 0; padding: 20px 24px 40px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto,
  "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 20px; margin: 0 0 4px; font-weight: 600; } h1 .muted { font-weight: 400; }
h2 { font-size: 15px; margin: 28px 0 10px; font-weight: 600; }
a { color: var(--info); text-decoration: none; } a:hover { text-decoration: underline; }
.sub { color: var(--muted); margin: 0 0 18px; }
.notice { background: var(--info-bg); color: var(--info); padding: 8px 12px; border-radius: 6px;
  margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 20px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; min-width: 180px;
  background: var(--soft); }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 20px; font-weight: 600; margin-top: 2px; font-variant-numeric: tabular-nums; }
.card .note { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 7px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; background: var(--soft); }
thead th { vertical-align: bottom; }
.scroll { overflow-x: auto; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.n { white-space: nowrap; }
tbody tr:hover { background: var(--soft); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; }
.ok { color: var(--ok); background: var(--ok-bg); } .warn { color: var(--warn); background: var(--warn-bg); }
.bad { color: var(--bad); background: var(--bad-bg); }
.info { color: var(--info); background: var(--info-bg); }
.why { color: var(--muted); font-size: 12px; margin-top: 2px; max-width: 220px; }
.why.brief { display: -webkit-box; -webkit-line-clamp: 4; -webkit-box-orient: vertical; overflow: hidden; }
.muted { color: var(--muted); } .nowrap { white-space: nowrap; }
.bar { height: 6px; background: var(--line); border-radius: 3px; overflow: hidden; width: 110px;
  margin-top: 4px; }
.bar > span { display: block; height: 100%; background: var(--info); }
.bar.wide { width: 260px; } .bar.hot > span { background: var(--bad); }
button { font: inherit; font-size: 13px; padding: 4px 10px; border-radius: 6px; border: 1px solid #cbd5e1;
  background: #fff; color: var(--fg); cursor: pointer; white-space: nowrap; }
button:hover:not(:disabled) { background: var(--soft); border-color: #94a3b8; }
button.primary { background: var(--info); border-color: var(--info); color: #fff; }
button.primary:hover:not(:disabled) { background: #1e40af; }
button:disabled { opacity: .45; cursor: not-allowed; }
form { display: inline; margin: 0; }
.tabs { margin-left: 8px; }
.tabs a { display: inline-block; padding: 3px 10px; border: 1px solid var(--line); border-radius: 6px;
  margin-right: 4px; font-size: 12px; font-weight: 400; }
.tabs a.on { background: var(--info); color: #fff; border-color: var(--info); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 14px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
figcaption { font-weight: 600; font-size: 13px; margin-bottom: 4px; }
.key { font-weight: 400; color: var(--muted); font-size: 12px; margin-left: 8px; }
.key i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 8px;
  vertical-align: -1px; }
svg text { font-size: 10px; fill: var(--muted); }
code { font-size: 12px; background: var(--soft); padding: 1px 4px; border-radius: 4px; }
.msg { max-width: 420px; word-break: break-word; }
.empty { color: var(--muted); padding: 14px 0; }
"""


@dataclass(frozen=True)
class Context:
    prefix: str  # where the app is mounted, e.g. "/sfsync"
    user: str
    done: str | None  # the action just taken, for a notice


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


def _n(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def span(seconds: float | None) -> str:
    """A duration in words a person reads at a glance: 0.4s, 45s, 12m, 3h 5m, 2d 4h."""
    if seconds is None:
        return "–"
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _when(at: dt.datetime | None, now: dt.datetime) -> str:
    """Relative time, with the exact UTC time on hover."""
    if at is None:
        return '<span class="muted">never</span>'
    delta = (now - at).total_seconds()
    words = f"{span(delta)} ago" if delta >= 0 else f"in {span(-delta)}"
    exact = at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f'<time datetime="{_e(at.isoformat())}" title="{exact}">{words}</time>'


def _page(title: str, ctx: Context, body: str) -> str:
    notice = f'<p class="notice" role="status">{_e(NOTICES[ctx.done])}</p>' if ctx.done in NOTICES else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>{notice}{body}</body></html>"
    )


def unavailable(prefix: str, message: str) -> str:
    """An error page (the object is unknown, the warehouse unreachable)."""
    body = (
        f'<h1>Salesforce sync</h1><p class="sub">{_e(message)}</p><p><a href="{_e(prefix)}/">Overview</a></p>'
    )
    return _page("Salesforce sync", Context(prefix, "", None), body)


def _run_state(run: status.RunSummary | None, now: dt.datetime) -> str:
    if run is None:
        return '<span class="muted">no run yet</span>'
    words, tone = STATES.get(run.status, (run.status, "info"))
    title = _e(f"{run.direction} run {run.status}" + (f": {run.message}" if run.message else ""))
    why = f'<div class="why">{_e(run.message)}</div>' if run.message and tone != "ok" else ""
    return (
        f'<span class="badge {tone}" data-k="last_run" title="{title}">{_e(words)}</span>'
        f'<div class="why nowrap">{_e(run.direction)} · {_when(run.finished_at or run.started_at, now)}</div>'
        f"{why}"
    )


def _health(o: status.ObjectStatus, brief: bool = False) -> str:
    """The health badge and its reasons; ``brief``: their first lines, all of them on hover (a refusal in
    Salesforce's words would make an overview row as tall as the screen)."""
    reasons, kind = _e("; ".join(o.reasons)), "why brief" if brief else "why"
    why = f'<div class="{kind}" title="{reasons}">{reasons}</div>' if o.reasons else ""
    return f'<span class="badge {HEALTH.get(o.health, "info")}" data-k="health">{_e(o.health)}</span>{why}'


def _progress(done: int, total: int, hot: bool = False, wide: bool = False) -> str:
    share = 0 if total <= 0 else min(100, round(100 * done / total))
    tone = (" wide" if wide else "") + (" hot" if hot else "")
    return f'<div class="bar{tone}"><span style="width:{share}%"></span></div>'


def _full_load(load: status.FullLoadProgress | None) -> str:
    if load is None:
        return '<span class="muted">–</span>'
    return (
        f'<span data-k="full_load">{load.slices_done}/{load.slices_total} slices</span>'
        f'<div class="why">{_n(load.rows)} rows</div>{_progress(load.slices_done, load.slices_total)}'
    )


def _next(schedule: Schedule | None, now: dt.datetime) -> str:
    if schedule is None:
        return '<span class="muted">not in Airflow yet</span>'
    after, paused = schedule
    if paused:
        return '<span class="badge warn">paused</span>'
    if after is None:
        return '<span class="muted">none</span>'
    return _when(after, now) if after > now else "due now"


def _button(ctx: Context, action: str, label: str, allowed: bool, back: str, primary: bool = False) -> str:
    if not allowed:
        return f'<button type="button" disabled title="You may not do this">{_e(label)}</button>'
    return (
        f'<form method="post" action="{_e(ctx.prefix + action)}">'
        f'<input type="hidden" name="next" value="{_e(back)}">'
        f'<button type="submit"{" class=primary" if primary else ""}>{_e(label)}</button></form>'
    )


def _org(org: status.OrgStatus, now: dt.datetime) -> str:
    if org.used is None or org.limit is None:
        usage = '<div class="value">–</div><div class="note">no reading yet: the first run takes one</div>'
    else:
        share = org.used / org.limit if org.limit else 0.0
        usage = (
            f'<div class="value"><span data-k="api_used">{_n(org.used)}</span>'
            f' <span class="muted">/ <span data-k="api_limit">{_n(org.limit)}</span></span></div>'
            f"{_progress(org.used, org.limit, org.holding, wide=True)}"
            f'<div class="note">{share:.0%} used · budget {org.budget_share:.0%}'
            f" · read {_when(org.seen_at, now)}</div>"
        )
    guard = (
        '<span class="badge bad" data-k="holding">holding runs back</span>'
        if org.holding
        else '<span class="badge ok" data-k="holding">not holding</span>'
    )
    org_name = f'<div class="note">org {_e(org.org)}</div>' if org.org else ""
    return (
        '<div class="cards">'
        f'<div class="card"><div class="label">API requests today</div>{usage}</div>'
        f'<div class="card"><div class="label">Budget guard</div><div class="value">{guard}</div>'
        f'<div class="note"><span data-k="skipped_runs_24h">{_n(org.skipped_runs_24h)}</span>'
        f" runs skipped in 24 h</div>{org_name}</div></div>"
    )


def _head(*columns: str) -> str:
    """Table headings; a heading ending in "#" is a number column (right-aligned)."""
    return "".join(
        f'<th class="n">{_e(c[:-1])}</th>' if c.endswith("#") else f"<th>{_e(c)}</th>" for c in columns
    )


def _table(ident: str, head: str, rows: Sequence[str], empty: str) -> str:
    if not rows:
        return f'<p class="empty" id="{ident}">{_e(empty)}</p>'
    table = f'<table id="{ident}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    return f'<div class="scroll">{table}</div>'


def _watcher_badge(w: status.WatcherStatus, named: bool = True) -> str:
    label = f"{SOURCES.get(w.source, w.source)}: {w.state}" if named else w.state
    return (
        f'<span class="badge {WATCHER_STATES.get(w.state, "info")}" data-k="watcher"'
        f' data-source="{_e(w.source)}">{_e(label)}</span>'
    )


def _events(o: status.ObjectStatus) -> str:
    """Each watcher's state; why one fails is among the health's reasons."""
    if not o.watchers:
        return '<span class="muted">schedule only</span>'
    return "".join(f'<div class="nowrap">{_watcher_badge(w)}</div>' for w in o.watchers)


def _object_row(ctx: Context, o: status.ObjectStatus, schedule: Schedule | None, may_sync: bool) -> str:
    now = dt.datetime.now(dt.UTC)
    link = f"{ctx.prefix}/objects/{quote(o.sobject)}"
    oldest = f'<div class="why">oldest {span(o.oldest_pending_seconds)}</div>' if o.backlog else ""
    errors = f'<a href="{_e(link)}#errors">{_n(o.open_errors)}</a>' if o.open_errors else "0"
    sync = _button(ctx, f"/api/objects/{quote(o.sobject)}/sync", "Sync now", may_sync, ctx.prefix + "/", True)
    return (
        f'<tr data-sobject="{_e(o.sobject)}">'
        f'<td><a href="{_e(link)}"><b>{_e(o.sobject)}</b></a><div class="why">{_e(o.table)}</div></td>'
        f"<td>{_health(o, brief=True)}</td><td>{_e(o.direction)}</td><td>{_run_state(o.last_run, now)}</td>"
        f"<td>{_when(o.last_success_at, now)}</td>"
        f'<td class="n" data-k="lag">{span(o.lag_seconds)}</td>'
        f'<td class="n" data-k="rows_in_24h">{_n(o.rows_in_24h)}</td>'
        f'<td class="n" data-k="rows_out_24h">{_n(o.rows_out_24h)}</td>'
        f'<td class="n" data-k="api_calls_24h">{_n(o.api_calls_24h)}</td>'
        f'<td class="n"><span data-k="backlog">{_n(o.backlog)}</span>{oldest}</td>'
        f'<td class="n" data-k="open_errors">{errors}</td>'
        f"<td>{_full_load(o.full_load)}</td><td>{_events(o)}</td><td>{_next(schedule, now)}</td>"
        f"<td>{sync}</td></tr>"
    )


def overview(
    ctx: Context,
    objects: Sequence[status.ObjectStatus],
    org: status.OrgStatus | None,
    schedules: dict[str, Schedule],
    can_sync: frozenset[str],
) -> str:
    now = dt.datetime.now(dt.UTC)
    title = "<h1>Salesforce sync</h1>"
    if org is None:
        body = f'{title}<p class="sub">You may read none of the sync DAGs.</p>'
        return _page("Salesforce sync", ctx, body)
    counts = {h: sum(o.health == h for o in objects) for h in HEALTH}
    summary = "".join(f" · {counts[h]} {h}" for h in HEALTH if counts[h])
    rows = [_object_row(ctx, o, schedules.get(o.dag_id), o.dag_id in can_sync) for o in objects]
    head = _head(
        "Object", "Health", "Direction", "Last run", "Last success", "Lag#", "Rows in 24 h#",
        "Rows out 24 h#", "API calls 24 h#", "Backlog#", "Open errors#", "Full load", "Events", "Next run",
        "",
    )  # fmt: skip
    body = (
        f'{title}<p class="sub">{len(objects)} objects{_e(summary)} · as of {now:%H:%M:%S} UTC</p>'
        f"{_org(org, now)}{_table('objects', head, rows, 'No object is enabled in the registry.')}"
    )
    return _page("Salesforce sync", ctx, body)


Series = tuple[str, str, Callable[[status.Point], float]]  # name, colour, value


def chart(
    points: Sequence[status.Point], lines: Sequence[Series], fmt: Callable[[float], str], days: int
) -> str:
    """Bars per time bucket (side by side when there are several series), with a scale and hover titles."""
    width, height, left, bottom, top = 560, 160, 44, 18, 8
    plot_w, plot_h = width - left - 4, height - bottom - top
    top_value = _nice(max([get(p) for p in points for _, _, get in lines] + [0]))
    scale = top_value or 1
    slot = plot_w / max(1, len(points))
    bar = max(1.0, slot * 0.8 / max(1, len(lines)))
    stamp = "%H:%M" if days == 1 else "%a %H:%M"
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">']
    for share in (0, 0.5, 1):
        y = top + plot_h * (1 - share)
        parts.append(f'<line x1="{left}" x2="{width - 4}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        label = _e(fmt(top_value * share))
        parts.append(f'<text x="{left - 6}" y="{y + 3:.1f}" text-anchor="end">{label}</text>')
    for i, p in enumerate(points):
        x0 = left + i * slot + slot * 0.1
        when = p.at.astimezone(dt.UTC).strftime(stamp)
        for j, (name, colour, get) in enumerate(lines):
            h = plot_h * get(p) / scale
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}"'
                f' fill="{colour}" rx="1"><title>{_e(f"{when} UTC · {name}: {fmt(get(p))}")}</title></rect>'
            )
    for i in sorted({0, len(points) // 2, len(points) - 1}) if points else []:
        x = left + i * slot + slot / 2
        when = points[i].at.astimezone(dt.UTC).strftime(stamp)
        parts.append(f'<text x="{x:.1f}" y="{height - 4}" text-anchor="middle">{_e(when)}</text>')
    return "".join(parts) + "</svg>"


def _nice(value: float) -> float:
    """The scale's top: the smallest of 1, 2, 5, 10, 20, ... (or a tenth of those) not below ``value``."""
    if value <= 0:
        return 0
    step = 10 ** math.floor(math.log10(value))
    return next(m * step for m in (1, 2, 5, 10) if m * step >= value)


def _count(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _figure(
    name: str, caption: str, points: Sequence[status.Point], lines: Sequence[Series], days: int
) -> str:
    fmt: Callable[[float], str] = span if name == "seconds" else _count
    key = "".join(f'<i style="background:{colour}"></i>{_e(label)}' for label, colour, _ in lines)
    return (
        f'<figure data-chart="{name}"><figcaption>{_e(caption)}<span class="key">{key}</span></figcaption>'
        f"{chart(points, lines, fmt, days)}</figure>"
    )


def _value(value: object) -> str:
    return '<span class="muted">null</span>' if value is None else f"<code>{_e(value)}</code>"


def _cards(o: status.ObjectStatus, schedule: Schedule | None, now: dt.datetime) -> str:
    backlog = f'<span data-k="backlog">{_n(o.backlog)}</span>'
    if o.backlog:
        backlog += f'<div class="note">oldest {span(o.oldest_pending_seconds)}</div>'
    cards = [
        ("Health", _health(o)),
        ("Last run", _run_state(o.last_run, now)),
        ("Last success", _when(o.last_success_at, now)),
        ("Lag", f'<span data-k="lag">{span(o.lag_seconds)}</span>'),
        ("Rows in 24 h", f'<span data-k="rows_in_24h">{_n(o.rows_in_24h)}</span>'),
        ("Rows out 24 h", f'<span data-k="rows_out_24h">{_n(o.rows_out_24h)}</span>'),
        ("API calls 24 h", f'<span data-k="api_calls_24h">{_n(o.api_calls_24h)}</span>'),
        ("Backlog", backlog),
        ("Open errors", f'<span data-k="open_errors">{_n(o.open_errors)}</span>'),
        ("Next run", _next(schedule, now)),
    ]
    if o.full_load:
        cards.append(("Full load", _full_load(o.full_load)))
    return "".join(
        f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{value}</div></div>'
        for label, value in cards
    )


def _run_row(r: status.RunRow, now: dt.datetime) -> str:
    tone = STATES.get(r.status, (r.status, "info"))[1]
    counts = (r.new, r.updated, r.deleted, r.skipped, r.failed, r.api_calls)
    return (
        f'<tr data-run-id="{_e(r.run_id)}"><td>{_when(r.started_at, now)}</td><td>{_e(r.direction)}</td>'
        f'<td><span class="badge {tone}">{_e(r.status)}</span></td>'
        + "".join(f'<td class="n">{_n(v)}</td>' for v in counts)
        + f'<td class="n">{span(r.seconds)}</td><td class="msg">{_e(r.message)}</td></tr>'
    )


def _error_row(ctx: Context, err: status.ErrorRow, api: str, back: str, may_edit: bool) -> str:
    now = dt.datetime.now(dt.UTC)
    due = err.next_attempt_at
    waiting = due is not None and due > now  # a transient error sitting out its backoff
    if due is None:
        retry_at = '<span class="muted">when the row changes</span>'
    else:
        retry_at = _when(due, now) if waiting else "at the next run"
    buttons = _button(ctx, f"{api}/{err.row_id}/dismiss", "Dismiss", may_edit, back)
    if waiting:
        buttons = _button(ctx, f"{api}/{err.row_id}/retry", "Retry now", may_edit, back) + " " + buttons
    fields = f'<div class="why">fields: {_e(", ".join(err.fields))}</div>' if err.fields else ""
    return (
        f'<tr data-row-id="{err.row_id}" id="error-{err.row_id}">'
        f'<td><span class="badge {"warn" if err.transient else "bad"}" data-k="status_code">'
        f"{_e(err.status_code)}</span></td>"
        f'<td class="msg"><span data-k="message">{_e(err.message)}</span>{fields}</td>'
        f'<td>{_e(err.operation)}</td><td class="n" data-k="row_id">{err.row_id}</td>'
        f'<td><code data-k="sfid">{_e(err.sfid or "–")}</code></td><td>{_when(err.first_seen, now)}</td>'
        f'<td class="n" data-k="attempts">{err.attempts}</td><td>{retry_at}</td><td>{buttons}</td></tr>'
    )


def _watcher_row(w: status.WatcherStatus, now: dt.datetime) -> str:
    retry = _when(w.retry_at, now) if w.retry_at else '<span class="muted">–</span>'
    return (
        f'<tr data-source="{_e(w.source)}"><td>{_e(status.WATCHED.get(w.source, w.source))}</td>'
        f"<td>{_watcher_badge(w, named=False)}</td><td>{_when(w.since, now)}</td>"
        f'<td class="msg" data-k="watcher_error">{_e(w.error or "–")}</td><td>{retry}</td>'
        f'<td>{_when(w.woken_at, now)}</td><td class="n" data-k="wakes">{_n(w.wakes)}</td>'
        f"<td>{_when(w.checked_at, now)}</td></tr>"
    )


def _conflict_row(c: status.ConflictRow, now: dt.datetime) -> str:
    return (
        f'<tr><td>{_when(c.decided_at, now)}</td><td class="n">{c.row_id}</td>'
        f"<td><code>{_e(c.sfid or '–')}</code></td><td>{_e(c.field)}</td>"
        f"<td>{_value(c.warehouse_value)}</td><td>{_value(c.salesforce_value)}</td>"
        f'<td><span class="badge info">{_e(c.winner)}</span></td><td class="msg">{_e(c.reason)}</td></tr>'
    )


def detail(
    ctx: Context,
    d: status.ObjectDetail,
    days: int,
    schedule: Schedule | None,
    *,
    may_sync: bool,
    may_edit: bool,
) -> str:
    now = dt.datetime.now(dt.UTC)
    o = d.status
    here = f"{ctx.prefix}/objects/{quote(o.sobject)}"
    back = f"{here}?days={days}"
    api = f"/api/objects/{quote(o.sobject)}"
    tabs = "".join(
        f'<a href="{_e(here)}?days={n}" class="{"on" if n == days else ""}">{label}</a>'
        for n, label in ((1, "24 hours"), (7, "7 days"))
    )
    rows: list[Series] = [("in", IN, lambda p: p.rows_in), ("out", OUT, lambda p: p.rows_out)]
    charts = (
        _figure("rows", "Rows", d.series, rows, days)
        + _figure(
            "seconds", "Pull duration (mean)", d.series, [("seconds", "#0d9488", lambda p: p.seconds)], days
        )
        + _figure("api_calls", "API calls", d.series, [("calls", "#ea580c", lambda p: p.api_calls)], days)
    )
    errors = [_error_row(ctx, err, f"{api}/errors", back, may_edit) for err in d.errors]
    error_head = _head(
        "Status code",
        "Message",
        "Operation",
        "Row#",
        "Salesforce Id",
        "First seen",
        "Attempts#",
        "Next retry",
        "",
    )
    run_head = _head(
        "Started", "Direction", "Status", "New#", "Updated#", "Deleted#", "Skipped#", "Failed#", "API calls#",
        "Duration#", "Message",
    )  # fmt: skip
    conflict_head = _head(
        "Decided", "Row#", "Salesforce Id", "Field", "Warehouse value", "Salesforce value", "Winner", "Why"
    )
    sync = _button(ctx, f"{api}/sync", "Sync now", may_sync, back, True)
    watchers = ""
    if o.watchers:
        watcher_head = _head(
            "Source", "State", "Since", "Last error", "Next try", "Last wake", "Wakes#", "Last heard"
        )
        watcher_rows = [_watcher_row(w, now) for w in o.watchers]
        watchers = f"<h2>Event watchers</h2>{_table('watcher-table', watcher_head, watcher_rows, '')}"
    body = (
        f'<p class="sub"><a href="{_e(ctx.prefix)}/">← All objects</a></p>'
        f'<h1>{_e(o.sobject)} <span class="muted">· {_e(o.direction)}</span></h1>'
        f'<p class="sub"><code>{_e(o.dag_id)}</code> → <code>salesforce.{_e(o.table)}</code> {sync}</p>'
        f'<div class="cards">{_cards(o, schedule, now)}</div>{watchers}'
        f'<h2>Activity <span class="tabs">{tabs}</span></h2><div class="charts">{charts}</div>'
        f'<h2 id="errors">Open errors ({len(d.errors)})</h2>'
        f"{_table('error-table', error_head, errors, 'No open errors.')}"
        "<h2>Recent runs</h2>"
        f"{_table('run-table', run_head, [_run_row(r, now) for r in d.runs], 'No runs yet.')}"
        "<h2>Decided conflicts</h2>"
        f"{_table('conflict-table', conflict_head, [_conflict_row(c, now) for c in d.conflicts], 'None.')}"
    )
    return _page(f"{o.sobject} · Salesforce sync", ctx, body)
