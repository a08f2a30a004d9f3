"""The monitoring report: one self-contained HTML page (inline SVG plots, no external resource).

The KFP UI shows it as the monitoring step's HTML artifact; locally it is a file a browser opens. It
renders a `MonitoringSummary` and nothing else, so the page and the machine-readable summary cannot
disagree. Plots are drawn with matplotlib's object API (no pyplot global state) as SVG.
"""

from __future__ import annotations

import html
import io
import itertools
from collections.abc import Sequence
from typing import Any

from shipyard.monitoring import FeatureDrift, MonitoringSummary
from shipyard.retraining import Retraining

__all__ = ["render_html"]

COLOURS = {"healthy": "#1a7f37", "warn": "#b35900", "retrain": "#c62828", "info": "#57606a"}
REFERENCE, SERVED = "#8c9bab", "#1f6feb"
MAX_DISTRIBUTIONS = 6
# No date (reproducible pages) and no RDF block: the page carries nothing it does not show.
_NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px; color: #1f2328;
       max-width: 1180px; }
h1 { font-size: 22px; margin: 0 0 4px 0; } h2 { font-size: 17px; margin: 28px 0 8px 0;
     border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.muted { color: #57606a; font-size: 13px; }
.banner { padding: 12px 16px; border-radius: 6px; color: white; margin: 14px 0; }
.banner b { font-size: 20px; text-transform: uppercase; letter-spacing: 0.05em; }
.banner ul { margin: 6px 0 0 0; padding-left: 20px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.sev { font-weight: 600; } .grid { display: flex; flex-wrap: wrap; gap: 16px; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 12px; min-width: 150px; }
.card .v { font-size: 20px; font-weight: 600; } svg { max-width: 100%; height: auto; }
.next { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 12px;
        display: inline-block; }
.next code { font-size: 14px; font-weight: 600; }
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _num(value: float | None, digits: int = 3, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" if pct else f"{value:.{digits}f}"


def _time(value: str | None) -> str:
    """An ISO 8601 time as a person reads it: to the second, in UTC."""
    if not value:
        return "n/a"
    from shipyard.monitoring import parse_time

    try:
        return parse_time(value).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return value


def _pairs(values: dict[str, Any]) -> str:
    """`{'train': 10, 'val': 2}` as `train 10, val 2` (unset values left out)."""
    return ", ".join(
        f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items() if v is not None
    )


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1e}" if value < 0.001 else f"{value:.3f}"


def _svg(fig: Any) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "shipyard"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata=_NO_METADATA)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    fig.set_layout_engine("constrained")
    return fig


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


# -- plots ------------------------------------------------------------------------------------------
def _psi_plot(drift: Sequence[FeatureDrift], warn: float, retrain: float) -> str:
    shown = sorted((d for d in drift if d.psi is not None), key=lambda d: d.psi or 0.0)
    if not shown:
        return ""
    fig = _figure(7.5, 0.28 * len(shown) + 1.1)
    ax = fig.add_subplot()
    colours = [COLOURS[d.severity] if d.drifted else REFERENCE for d in shown]
    ax.barh([d.feature for d in shown], [d.psi or 0.0 for d in shown], color=colours)
    ax.axvline(warn, color=COLOURS["warn"], linestyle="--", linewidth=1, label=f"warn {warn:g}")
    ax.axvline(retrain, color=COLOURS["retrain"], linestyle="--", linewidth=1, label=f"retrain {retrain:g}")
    ax.set_xlabel("population stability index (served vs training)")
    ax.set_xlim(0, max(max(d.psi or 0.0 for d in shown), retrain) * 1.1)
    ax.legend(loc="lower right", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_title("Drift per model input", fontsize=10)
    return _svg(fig)


def _bin_labels(edges: Sequence[float]) -> list[str]:
    def short(x: float) -> str:
        return f"{x:.3g}"

    if len(edges) < 2:
        return [f"= {short(edges[0])}" if edges else "value", "other"]
    return [f"{short(a)}..{short(b)}" for a, b in itertools.pairwise(edges)]


def _distribution_plots(drift: Sequence[FeatureDrift]) -> str:
    ranked = sorted((d for d in drift if d.psi is not None), key=lambda d: -(d.psi or 0.0))[
        :MAX_DISTRIBUTIONS
    ]
    if not ranked:
        return ""
    cols = 2
    rows = (len(ranked) + cols - 1) // cols
    fig = _figure(11, 2.9 * rows)
    for i, d in enumerate(ranked):
        ax = fig.add_subplot(rows, cols, i + 1)
        if d.kind == "categorical":
            ref_shares: dict[str, float] = d.reference.get("shares", {})
            served_shares: dict[str, float] = d.served.get("shares", {})
            keys = sorted(set(ref_shares) | set(served_shares), key=lambda k: -ref_shares.get(k, 0.0))[:12]
            labels = keys
            ref_values = [ref_shares.get(k, 0.0) for k in keys]
            served_values = [served_shares.get(k, 0.0) for k in keys]
        else:
            labels = _bin_labels(d.reference.get("bin_edges", []))
            ref_values = list(d.reference.get("shares", []))
            served_values = list(d.served.get("shares", []))
            n = min(len(labels), len(ref_values), len(served_values))
            labels, ref_values, served_values = labels[:n], ref_values[:n], served_values[:n]
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], ref_values, width=0.4, color=REFERENCE, label="training")
        ax.bar([x + 0.2 for x in xs], served_values, width=0.4, color=SERVED, label="served")
        ax.set_xticks(list(xs), labels, rotation=35, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        test = f", {d.test.upper()} p={_p(d.p_value)}" if d.test else ""
        colour = COLOURS[d.severity] if d.drifted else "#1f2328"
        ax.set_title(f"{d.feature}: PSI {d.psi:.3f}{test}", fontsize=9, color=colour)
        ax.set_ylabel("share", fontsize=8)
        if i == 0:
            ax.legend(fontsize=7)
    return _svg(fig)


def _shares_plot(title: str, series: dict[str, dict[str, float]], colours: Sequence[str]) -> str:
    keys = list(next(iter(series.values()), {}).keys())
    if not keys:
        return ""
    fig = _figure(5.4, 2.8)
    ax = fig.add_subplot()
    width = 0.8 / len(series)
    for j, ((name, values), colour) in enumerate(zip(series.items(), colours, strict=False)):
        offset = (j - (len(series) - 1) / 2) * width
        ax.bar(
            [i + offset for i in range(len(keys))],
            [values.get(k, 0.0) for k in keys],
            width,
            label=name,
            color=colour,
        )
    ax.set_xticks(range(len(keys)), keys, fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _svg(fig)


# -- the page ---------------------------------------------------------------------------------------
def render_html(summary: MonitoringSummary) -> str:
    s = summary
    m, w, perf, dq = s.model, s.window, s.performance, s.data_quality
    colour = COLOURS[s.decision]
    reasons = "".join(
        f'<li><span class="sev">{_e(r.severity.upper())}</span> [{_e(r.signal)}] {_e(r.message)}</li>'
        for r in s.reasons
        if r.severity != "info"
    )
    notes = "".join(f"<li>{_e(r.message)}</li>" for r in s.reasons if r.severity == "info")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Monitoring {_e(m.name)} {_e(m.version)}: {_e(s.decision)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Monitoring: {_e(m.name)} {_e(m.version)}</h1>",
        f'<div class="muted">requests {_e(_time(w.start))} → {_e(_time(w.end))}'
        + (f"; their events {_e(_time(w.events_from))} → {_e(_time(w.events_to))}" if w.events_to else "")
        + f"; labels as of {_e(_time(w.labels_as_of))}</div>",
        f'<div class="muted">content hash {_e(m.content_hash[:12])}; '
        f"generated {_e(_time(s.generated_at))}</div>",
        f'<div class="banner" style="background:{colour}"><b>{_e(s.decision)}</b>',
        f"<ul>{reasons}</ul>" if reasons else "<div>no signal past its threshold</div>",
        "</div>",
        f'<ul class="muted">{notes}</ul>' if notes else "",
        _retraining(s.retrain) if s.retrain is not None else "",
        '<div class="grid">',
        _card("served rows", f"{w.rows}", f"{w.requests} requests, {w.rejected_requests} rejected"),
        _card("labelled rows", f"{perf.labelled}", f"{w.label_pending} waiting for their label"),
        _card(
            "accuracy (fresh labels)",
            _num(perf.accuracy),
            f"evaluation {_num(perf.reference_accuracy)} on {perf.reference_rows} rows",
        ),
        _card("macro-F1 (fresh labels)", _num(perf.macro_f1), f"evaluation {_num(perf.reference_macro_f1)}"),
        _card("drifted inputs", f"{len(s.drifted)} / {len(s.drift)}", "PSI past threshold and test rejects"),
        _card("model age", f"{_num(m.age_days, 1)} d", f"retrain at {s.thresholds.get('max_age_days')} d"),
        "</div>",
        "<h2>Drift</h2>",
        _psi_plot(s.drift, float(s.thresholds["psi_warn"]), float(s.thresholds["psi_retrain"])),
        _distribution_plots(s.drift),
        _table(
            ["input", "kind", "rows", "PSI", "test", "statistic", "p-value", "status", "note"],
            [
                [
                    _e(d.feature),
                    _e(d.kind),
                    str(d.rows),
                    _num(d.psi),
                    _e(d.test or "—"),
                    _num(d.statistic),
                    _p(d.p_value),
                    f'<span class="sev" style="color:{COLOURS[d.severity]}">'
                    f"{_e(d.severity if d.drifted else 'ok')}</span>",
                    _e(d.note),
                ]
                for d in sorted(s.drift, key=lambda d: -(d.psi or 0.0))
            ],
            numeric={2, 3, 5, 6},
        ),
    ]
    if s.text:
        parts += [
            "<h2>Text fields</h2>",
            _table(
                ["field", "rows", "mean length", "training", "out-of-vocabulary", "training", "note"],
                [
                    [
                        _e(t.field),
                        str(t.rows),
                        _num(t.length_mean, 1),
                        _num(t.reference_length_mean, 1),
                        _num(t.oov_rate, pct=True),
                        _num(t.reference_oov_rate, pct=True),
                        _e(t.note),
                    ]
                    for t in s.text
                ],
                numeric={1, 2, 3, 4, 5},
            ),
        ]
    pred = s.prediction
    parts += [
        "<h2>Predictions and accuracy</h2>",
        '<div class="grid">',
        _shares_plot(
            f"class shares (PSI {_num(pred.psi)}, p={_p(pred.p_value)})",
            {
                "holdout predictions": pred.reference,
                "served predictions": pred.served,
                "training labels": pred.training_labels,
            },
            [REFERENCE, SERVED, "#d0d7de"],
        )
        if pred.served
        else "",
        _shares_plot(
            "F1 per label",
            {
                "evaluation": {k: v.get("f1", 0.0) for k, v in perf.reference_per_label.items()},
                "fresh labels": {k: v.get("f1", 0.0) for k, v in perf.per_label.items()},
            },
            [REFERENCE, SERVED],
        )
        if perf.per_label
        else "",
        "</div>",
        _table(
            ["label", "precision", "recall", "F1", "support", "F1 at evaluation"],
            [
                [
                    _e(label),
                    _num(v.get("precision")),
                    _num(v.get("recall")),
                    _num(v.get("f1")),
                    str(int(v.get("support", 0))),
                    _num(perf.reference_per_label.get(label, {}).get("f1")),
                ]
                for label, v in perf.per_label.items()
            ],
            numeric={1, 2, 3, 4, 5},
        )
        if perf.per_label
        else f"<p class='muted'>{perf.labelled} labelled rows in the window.</p>",
        "<h2>Data quality</h2>",
        f"<p>{w.rejected_requests} of {w.requests} requests rejected by the input contract "
        f"({_num(dq.violation_rate, pct=True)}); {dq.server_errors} server errors; entities not found: "
        f"{_num(dq.entity_not_found_rate, pct=True)}; rows of other versions: "
        f"{_e(w.rows_other_versions or 'none')}; unreadable log lines: {w.skipped_lines}.</p>",
        _table(
            ["status", "code", "field", "rule", "requests"],
            [[str(r.status), _e(r.code), _e(r.field), _e(r.rule), str(r.count)] for r in dq.rejected],
            numeric={4},
        )
        if dq.rejected
        else "",
        _table(
            ["input", "missing (served, entity found)", "missing (training)"],
            [[_e(x.feature), _num(x.served, pct=True), _num(x.reference, pct=True)] for x in dq.missing],
            numeric={1, 2},
        ),
        "<h2>Model</h2>",
        _table(
            [
                "version",
                "project",
                "registered",
                "age (days)",
                "training accuracy",
                "macro-F1",
                "training time",
                "rows",
            ],
            [
                [
                    _e(m.version),
                    _e(m.project),
                    _e(_time(m.created_at)),
                    _num(m.age_days, 1),
                    _num(m.training_accuracy),
                    _num(m.training_macro_f1),
                    f"{_num(m.training_seconds, 1)} s",
                    _e(_pairs(dict(m.training_rows))),
                ]
            ],
        ),
        f"<p class='muted'>reference statistics version {m.reference_version}; request log {_e(w.log)} "
        f"({w.files} files). Thresholds: {_e(_pairs(s.thresholds))}.</p>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _retraining(r: Retraining) -> str:
    """What continuous training did after the decision, and the command that takes it further."""
    if not r.triggered:
        return f"<h2>Continuous training</h2><p>{_e(r.message)}.</p>"
    colour = {"candidate": COLOURS["healthy"], "rejected": COLOURS["retrain"]}.get(r.status or "", "#57606a")
    what = _e(r.version) if r.run_id is None else f"Kubeflow Pipelines run {_e(r.run_id)}"
    parts = [
        "<h2>Continuous training</h2>",
        f'<p><span class="sev" style="color:{colour}">{what}: {_e(r.status)}</span> — {_e(r.message)}.</p>',
    ]
    if r.run_url:
        parts.append(
            f"<p class='muted'>the run (experiment {_e(r.experiment)}): "
            f'<a href="{_e(r.run_url)}">{_e(r.run_url)}</a></p>'
        )
    if r.window is not None:
        start = _time(r.window.start) if r.window.start else "the first"
        verb = "trains" if r.status == "submitted" else "trained"
        reason = f"; {_e(r.reason)}" if r.reason else ""
        parts.append(
            f"<p class='muted'>{verb} on the events from {_e(start)} to {_e(_time(r.window.end))} whose "
            f"label had arrived by {_e(_time(r.window.labels_as_of))}{reason}</p>"
        )
    rows: list[list[str]] = []
    if r.holdout is not None:
        h = r.holdout
        rows.append(
            [
                f"its holdout of the new window ({h.rows} rows it never trained on)",
                _e(h.champion_version or "no champion"),
                _num(h.accuracy),
                _num(h.champion_accuracy),
                _num(h.macro_f1),
                _num(h.champion_macro_f1),
            ]
        )
    if r.backtest is not None:
        b = r.backtest
        rows.append(
            [
                f"this window's {b.rows} labelled rows, features as served (it trained on some)",
                _e(b.served_version),
                _num(b.candidate_accuracy),
                _num(b.served_accuracy),
                _num(b.candidate_macro_f1),
                _num(b.served_macro_f1),
            ]
        )
        if b.unseen_rows:
            rows.append(
                [
                    f"… the {b.unseen_rows} of them it never trained on",
                    _e(b.served_version),
                    _num(b.candidate_unseen_accuracy),
                    _num(b.served_unseen_accuracy),
                    "—",
                    "—",
                ]
            )
    if rows:
        parts.append(
            _table(
                ["scored on", "compared with", "accuracy", "its accuracy", "macro-F1", "its macro-F1"],
                rows,
                numeric={2, 3, 4, 5},
            )
        )
    parts += [f"<p class='muted'>note: {_e(n)}</p>" for n in r.notes]
    if r.card:
        parts.append(f"<p class='muted'>model card: <code>{_e(r.card)}</code></p>")
    if r.next_command:
        parts.append(f'<p class="next">Next: <code>{_e(r.next_command)}</code></p>')
    return "\n".join(parts)


def _card(title: str, value: str, detail: str) -> str:
    return (
        f'<div class="card"><div class="muted">{_e(title)}</div><div class="v">{_e(value)}</div>'
        f'<div class="muted">{_e(detail)}</div></div>'
    )
