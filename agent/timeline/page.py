"""The timeline report page: one self-contained HTML file from a :class:`Snapshot`.

One plot, six rows on one shared time axis (zoom one, all follow): the analysed camera frames
as thumbnails, their face scores against ``vision.min_score``, the waveform with the VAD's
probability and each utterance's words, each utterance's image / audio / fused score against
the thresholds of that moment, how each decision ended and why, and the stage timings. A table
below repeats the decisions as text. plotly.js is inlined (``include_plotlyjs=True``): the page
fetches nothing, so it opens from a USB stick or an e-mail attachment on a box with no network.
"""

from __future__ import annotations

import base64
import html
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from agent import __version__
from agent.errors import ReportError
from agent.timeline.trace import Decision, FrameShot, Snapshot

_LOGGER = logging.getLogger(__name__)

EXTRA = "report"  # the pyproject extra that brings plotly

_WHY = {
    "accepted": "accepted",
    "not_a_command": "rejected: not a command",
    "disabled": "rejected: event type disabled",
    "nobody_in_view": "rejected: nobody in view",
    "below_threshold": "rejected: below threshold",
    "cooled_down": "rejected: cooled down",
    None: "undecided",
}
_COLOR = {
    "accepted": "#1a9850",
    "not_a_command": "#969696",
    "disabled": "#969696",
    "nobody_in_view": "#d73027",
    "below_threshold": "#f46d43",
    "cooled_down": "#fdae61",
    None: "#bdbdbd",
}
_ROWS = (
    "camera: analysed frames",
    "face score",
    "audio: waveform, VAD, words",
    "scores vs thresholds",
    "decision",
    "stage timings (ms)",
)


def verdict(d: Decision) -> str:
    """One line: how the decision ended and why."""
    if d.outcome == "accepted":
        return f"accepted: {d.kind} {d.detail}".strip()
    why = _WHY[d.outcome]
    if d.outcome == "not_a_command" and d.reason:
        # The recognizer's reasons often say "not a command (...)" themselves.
        said = d.reason.startswith("not a command")
        return f"rejected: {d.reason}" if said else f"{why} ({d.reason})"
    return f"{why} ({d.detail})" if d.detail else why


def heard(d: Decision) -> str:
    if d.intent is not None:
        return f"“{d.text}” → {d.intent}"
    if d.candidate is not None:
        return f"not a phrase; closest {d.candidate}"
    return f"“{d.text}”" if d.text else "(no words)"


def _face_text(shot: FrameShot) -> str:
    if shot.box is not None:
        return f"face {shot.score:.2f}"
    # A presence check scores the best face without its box.
    return f"face {shot.score:.2f} (presence check)" if shot.score > 0 else "no face"


def write_report(snap: Snapshot, path: Path, *, title: str) -> int:
    """Write the page atomically (a reader never sees half a file); returns its size."""
    page = render(snap, title=title).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(page)
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ReportError(f"cannot write the timeline report {path}: {err}") from err
    _LOGGER.info("timeline report written to %s (%d KB)", path, len(page) // 1024)
    return len(page)


def require_plotly() -> None:
    """Fail early (before a replay, at the daemon's start) when the extra is missing."""
    try:
        import plotly  # noqa: F401
    except ImportError as err:
        raise ReportError(
            f"the timeline report needs plotly: pip install 'edge-agent[{EXTRA}]'"
        ) from err


def render(snap: Snapshot, *, title: str) -> str:
    require_plotly()
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    live = snap.wall_offset_s is not None

    def x(t_ns: float) -> Any:
        if snap.wall_offset_s is None:
            return t_ns / 1e9
        return datetime.fromtimestamp(t_ns / 1e9 + snap.wall_offset_s)  # local time, naive

    def width(seconds: float) -> float:
        return seconds * 1000.0 if live else seconds  # date axes count milliseconds

    fig = make_subplots(
        rows=len(_ROWS),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.035,
        row_heights=[0.16, 0.1, 0.22, 0.2, 0.12, 0.2],
        subplot_titles=_ROWS,
    )
    span_s = max(1.0, (snap.end_ns - snap.start_ns) / 1e9)
    min_score = snap.settings.get("vision_min_score", 0.5)
    threshold = snap.settings.get("fusion_threshold", 0.5)

    # Row 1: thumbnails as layout images pinned to their capture time; hover on the dots.
    for shot in snap.frames:
        if not shot.jpeg:
            continue
        fig.add_layout_image(
            source="data:image/jpeg;base64," + base64.b64encode(shot.jpeg).decode(),
            x=x(shot.t_ns),
            y=1.0,
            xref="x",
            yref="y",
            sizex=width(span_s * 0.04),
            sizey=0.95,
            xanchor="center",
            yanchor="top",
            sizing="contain",
            layer="above",
        )
    fig.add_trace(
        go.Scatter(
            x=[x(f.t_ns) for f in snap.frames],
            y=[0.0] * len(snap.frames),
            mode="markers",
            marker={"size": 4, "color": "#555"},
            name="analysed frame",
            hovertext=[f"frame {f.index}: {_face_text(f)}" for f in snap.frames],
            hoverinfo="text",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    fig.update_yaxes(range=[0, 1], visible=False, row=1, col=1)

    # Row 2: each analysed frame's best face score against the minimum.
    fig.add_trace(
        go.Scatter(
            x=[x(f.t_ns) for f in snap.frames],
            y=[f.score for f in snap.frames],
            mode="markers",
            marker={
                "size": 6,
                "color": ["#1a9850" if f.score >= min_score else "#d73027" for f in snap.frames],
            },
            name="face score",
            showlegend=False,
        ),
        row=2,
        col=1,
    )
    _hline(fig, go, x, snap, min_score, "vision.min_score", row=2, dash="dot")
    fig.update_yaxes(range=[-0.05, 1.05], row=2, col=1)

    # Row 3: waveform envelope (mirrored), VAD probability, and what was heard.
    env = snap.envelope
    if len(env):
        t = [x(v) for v in env[:, 0]]
        fig.add_trace(
            go.Scatter(
                x=t,
                y=env[:, 1].tolist(),
                mode="lines",
                line={"width": 0.5, "color": "#6baed6"},
                name="waveform",
                showlegend=False,
            ),
            row=3,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=t,
                y=(-env[:, 1]).tolist(),
                mode="lines",
                line={"width": 0.5, "color": "#6baed6"},
                fill="tonexty",
                name="waveform",
                showlegend=False,
            ),
            row=3,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=t,
                y=env[:, 2].tolist(),
                mode="lines",
                line={"width": 1, "color": "#54278f"},
                name="VAD probability",
            ),
            row=3,
            col=1,
        )
        # Where the segmenter was inside speech: bars, broken where it was not (this also
        # shows bursts too short to become an utterance).
        fig.add_trace(
            go.Scatter(
                x=t,
                y=[1.15 if v else None for v in env[:, 3]],
                mode="lines",
                line={"width": 4, "color": "#54278f"},
                connectgaps=False,
                name="in speech (segmenter)",
            ),
            row=3,
            col=1,
        )
    fig.update_yaxes(range=[-1.05, 1.6], row=3, col=1)

    speech = [d for d in snap.decisions if d.end_ns > d.start_ns]
    for d in speech:
        color = _COLOR[d.outcome]
        for row in (3, 4):
            fig.add_vrect(
                x0=x(d.start_ns),
                x1=x(d.end_ns),
                fillcolor=color,
                opacity=0.15,
                line_width=0,
                row=row,
                col=1,
            )
        fig.add_annotation(
            x=x((d.start_ns + d.end_ns) / 2),
            y=1.35,
            text=html.escape(heard(d)),
            showarrow=False,
            font={"size": 11},
            row=3,
            col=1,
        )

    # Row 4: the scores of each utterance at its midpoint, thresholds over its span.
    # Side by side inside the utterance's span (image, audio, fused), labelled, so that
    # three equal scores do not hide each other.
    for name, label, at, values, symbol, color in (
        ("image x_image", "img", 0.2, [d.image for d in snap.decisions], "square", "#3182bd"),
        ("audio x_audio", "aud", 0.5, [d.audio for d in snap.decisions], "triangle-up", "#e6550d"),
        ("fused", "fused", 0.8, [d.fused for d in snap.decisions], "diamond", "#000000"),
    ):
        fig.add_trace(
            go.Scatter(
                x=[x(d.start_ns + at * (d.end_ns - d.start_ns)) for d in snap.decisions],
                y=values,
                mode="markers+text",
                text=[f"{label} {v:.2f}" if v is not None else "" for v in values],
                textposition="top center",
                textfont={"size": 9},
                marker={"size": 9, "symbol": symbol, "color": color},
                name=name,
            ),
            row=4,
            col=1,
        )
    seg_x: list[Any] = []
    seg_y: list[float | None] = []
    for d in snap.decisions:
        if d.fusion_threshold is None or d.fused is None:
            continue  # no fusion took place (not a command, disabled, help's own fusion)
        seg_x += [x(d.start_ns), x(max(d.end_ns, d.start_ns + 1)), None]
        seg_y += [d.fusion_threshold, d.fusion_threshold, None]
    fig.add_trace(
        go.Scatter(
            x=seg_x,
            y=seg_y,
            mode="lines",
            line={"dash": "dash", "color": "black"},
            name="fusion threshold",
        ),
        row=4,
        col=1,
    )
    fig.update_yaxes(range=[-0.05, 1.25], row=4, col=1)

    # Row 5: how each decision ended, at the moment it was made.
    for i, d in enumerate(snap.decisions):
        fig.add_annotation(
            x=x(d.decided_ns),
            y=0.75 if i % 2 == 0 else 0.25,
            text=html.escape(verdict(d)),
            showarrow=False,
            font={"size": 11, "color": _COLOR[d.outcome]},
            bgcolor="rgba(255,255,255,0.8)",
            row=5,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=[x(d.decided_ns) for d in snap.decisions],
            y=[0.5] * len(snap.decisions),
            mode="markers",
            marker={"size": 9, "color": [_COLOR[d.outcome] for d in snap.decisions]},
            hovertext=[
                f"{verdict(d)}<br>decided {(d.decided_ns - d.end_ns) / 1e6:.0f} ms "
                "after the end of speech"
                for d in snap.decisions
            ],
            hoverinfo="text",
            name="decision",
            showlegend=False,
        ),
        row=5,
        col=1,
    )
    fig.update_yaxes(range=[0, 1], visible=False, row=5, col=1)

    # Row 6: every stage timing (log scale: VAD takes ~0.1 ms, a face ~10 ms).
    stages: dict[str, tuple[list[Any], list[float]]] = {}
    for t_ns, stage, ms in snap.timings:
        xs, ys = stages.setdefault(stage, ([], []))
        xs.append(x(t_ns))
        ys.append(max(ms, 1e-3))
    for stage, (xs, ys) in sorted(stages.items()):
        fig.add_trace(
            go.Scatter(x=xs, y=ys, mode="markers", marker={"size": 4}, name=stage),
            row=6,
            col=1,
        )
    fig.update_yaxes(type="log", title_text="ms", row=6, col=1)

    fig.update_xaxes(
        range=[x(snap.start_ns), x(snap.end_ns)],
        title_text="local time" if live else "media time (s)",
        row=6,
        col=1,
    )
    fig.update_layout(
        height=1100,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
        hovermode="closest",
        legend={"orientation": "h", "y": -0.06},
        template="plotly_white",
    )
    plot = fig.to_html(
        full_html=False,
        include_plotlyjs=True,
        div_id="timeline",
        config={"displaylogo": False, "responsive": True},
    )
    return _page(title, snap, plot, threshold, min_score)


def _hline(
    fig: Any, go: Any, x: Any, snap: Snapshot, y: float, name: str, *, row: int, dash: str
) -> None:
    fig.add_trace(
        go.Scatter(
            x=[x(snap.start_ns), x(snap.end_ns)],
            y=[y, y],
            mode="lines",
            line={"dash": dash, "color": "black", "width": 1},
            name=name,
        ),
        row=row,
        col=1,
    )


def _page(title: str, snap: Snapshot, plot: str, threshold: float, min_score: float) -> str:
    def when(t_ns: int) -> str:
        if snap.wall_offset_s is None:
            return f"{t_ns / 1e9:.2f} s"
        return datetime.fromtimestamp(t_ns / 1e9 + snap.wall_offset_s).strftime("%H:%M:%S.%f")[:-3]

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    rows = []
    for d in snap.decisions:
        rows.append(
            f'<tr class="{html.escape(d.outcome or "undecided")}">'
            f"<td>{when(d.start_ns)} to {when(d.end_ns)}</td>"
            f"<td>{html.escape(d.kind)}</td>"
            f"<td>{html.escape(heard(d))}</td>"
            f"<td>{num(d.image)}</td><td>{num(d.audio)}</td><td>{num(d.fused)}</td>"
            f"<td>{num(d.fusion_threshold if d.fused is not None else None)}</td>"
            f'<td class="verdict">{html.escape(verdict(d))}</td>'
            f"<td>{(d.decided_ns - d.end_ns) / 1e6:.0f}</td></tr>"
        )
    accepted = sum(d.accepted for d in snap.decisions)
    table = (
        "<table><thead><tr><th>speech</th><th>rule</th><th>heard</th><th>image</th>"
        "<th>audio</th><th>fused</th><th>threshold</th><th>decision</th>"
        "<th>decided after (ms)</th></tr></thead><tbody>"
        + ("".join(rows) or '<tr><td colspan="9">no decision in this window</td></tr>')
        + "</tbody></table>"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; margin-top: 1em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
tr.accepted td.verdict {{ color: #1a9850; font-weight: 600; }}
td.verdict {{ color: #b2182b; }}
p.meta {{ color: #555; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="meta">{when(snap.start_ns)} to {when(snap.end_ns)} · {len(snap.decisions)} decisions,
{accepted} accepted · fusion threshold now {threshold:.2f}, vision.min_score now
{min_score:.2f} · {len(snap.frames)} analysed frames · edge-agent {__version__}</p>
{plot}
<h2>Decisions</h2>
{table}
</body></html>
"""
