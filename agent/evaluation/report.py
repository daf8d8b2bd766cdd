"""The evaluation as a compact text table, one self-contained HTML page and a JSON file."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

_CONDITIONS = ("clean", "noise", "reverb")
_POLICIES = (("fused", "fused"), ("audio_only", "audio-only"), ("image_only", "image-only"))


def _pct(r: dict[str, Any] | None) -> str:
    if not r or not r.get("of"):
        return "-"
    return f"{100.0 * r['n'] / r['of']:.1f}%"


def _frac(r: dict[str, Any] | None) -> str:
    return "-" if not r or not r.get("of") else f"{r['n']}/{r['of']}"


def _ph(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}/h"


def table(res: dict[str, Any]) -> str:
    meta = res["meta"]
    corpus = meta["corpus"]
    lines = [
        f"recognizer {meta['recognizer']} (engine {meta['engine']}); corpus {meta['corpus_dir']} "
        f"({corpus.get('clips', '?')} clips{', quick' if meta['quick'] else ''})",
    ]
    if corpus.get("families_missing"):
        lines.append(f"MISSING (not evaluated): {', '.join(corpus['families_missing'])}")
    test = res["clips"].get("test", {})
    fams = test.get("families", {})
    lines += [
        "",
        "Commands per clip (test split: voices never trained or tuned on)",
        f"  {'family':10} {'voices':>6} {'clean':>7} {'noise':>7} {'reverb':>7} {'all':>7} "
        f"{'wrong':>8} {'near misses acc.':>17}",
    ]
    for family, f in fams.items():
        cond = f["by_condition"]
        lines.append(
            f"  {family:10} {f['speakers']:>6} "
            + " ".join(f"{_pct(cond.get(c)):>7}" for c in _CONDITIONS)
            + f" {_pct(f['accepted']):>7} {_frac(f['wrong_intent']):>8} "
            f"{_frac(f['near_miss_accepted']):>17}"
        )
    if "all" in test:
        a = test["all"]
        lines.append(
            f"  {'all':10} {'':>6} {'':>7} {'':>7} {'':>7} {_pct(a['accepted']):>7} "
            f"{_frac(a['wrong_intent']):>8} {_frac(a['near_miss_accepted']):>17}"
        )
    if test.get("near_miss_examples"):
        shown = list(test["near_miss_examples"].items())[:8]
        lines.append(
            "  near misses accepted: "
            + "; ".join(f"{k} ({','.join(sorted(set(v)))})" for k, v in shown)
            + (" ..." if len(test["near_miss_examples"]) > 8 else "")
        )
    if test.get("wrong_intent_examples"):
        ex = test["wrong_intent_examples"][:4]
        lines.append(
            "  wrong intents: "
            + "; ".join(f"{e['text']!r} -> {e['got']} ({e['family']})" for e in ex)
        )
    if "real" in test:
        r = test["real"]
        ex = ", ".join(f"{e['text'] or e['file']!r} -> {e['got']}" for e in r["examples"])
        lines.append(
            f"Real recordings (pocketsphinx-testdata), per clip: "
            f"{_frac(r['false_commands'])} false commands" + (f" ({ex})" if ex else "")
        )
    tune = res["clips"].get("tune")
    if tune:
        lines.append(
            f"Tune split (espeak {', '.join(meta['tune_espeak'])}): commands "
            f"{_pct(tune['all']['accepted'])} accepted, wrong {_frac(tune['all']['wrong_intent'])},"
            f" near misses {_frac(tune['all']['near_miss_accepted'])}"
        )
    rtf = res["rtf"]["per_segment"]
    if rtf:
        lines.append(
            f"Recognizer RTF per segment (CPU, 1 thread): median {rtf['median']:.3f}, "
            f"p95 {rtf['p95']:.3f}, overall {rtf['overall']:.3f} over {int(rtf['segments'])}"
        )
    lines += [
        "",
        "Scenes through the pipeline (VAD -> recognizer -> vision -> fusion)",
        f"  {'scene':34} {'fused':>16} {'audio-only':>16} {'image-only':>16}",
    ]
    for name, s in res["scenes"].items():
        pol = s["policies"]
        hours = s["hours"]
        if name.startswith("commands") and s["person_in_view"]:
            label = f"{name} recall (n={pol['fused']['commands']})"
            cells = [
                f"{_pct({'n': pol[p]['hits'], 'of': pol[p]['commands']})}"
                f" w{pol[p]['wrong_intent']} f{pol[p]['false_accepts']}"
                for p, _ in _POLICIES
            ]
        elif name.startswith("commands"):
            label = f"{name} fired (n={pol['fused']['commands']})"
            cells = [
                f"{pol[p]['hits'] + pol[p]['wrong_intent'] + pol[p]['false_accepts']}"
                for p, _ in _POLICIES
            ]
        else:
            label = f"{name} false ({hours:.2f} h)"
            cells = [
                f"{pol[p]['false_accepts']} ({_ph(s['false_per_hour'][p])})" for p, _ in _POLICIES
            ]
        lines.append(f"  {label:34} " + " ".join(f"{c:>16}" for c in cells))
    lines.append("  (w = wrong intent, f = firings on no command; image-only fires on any speech)")
    bg = res["scenes"].get("background_person", {})
    for ex in bg.get("policies", {}).get("fused", {}).get("false_examples", [])[:6]:
        lines.append(
            f"  false voice_command at {ex['at_s']} s: heard {ex['heard']!r} ({ex['intent']})"
            f" in {ex['truth']!r}"
        )
    lines.append(
        f"wall: clips {meta['clips_wall_s']} s, all {meta['wall_s']} s; corpus built in "
        f"{corpus.get('build_s', '?')} s"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTML


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(res: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out: list[tuple[str, str]] = []
    fams = res["clips"].get("test", {}).get("families", {})
    if fams:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        names = list(fams)
        w = 0.8 / len(_CONDITIONS)
        for i, c in enumerate(_CONDITIONS):
            vals = [100.0 * (fams[f]["by_condition"].get(c, {}).get("rate") or 0.0) for f in names]
            ax.bar(np.arange(len(names)) + i * w, vals, w, label=c)
        ax.axhline(97, color="k", lw=0.8, ls="--")
        ax.set_xticks(np.arange(len(names)) + w, names)
        ax.set_ylabel("commands accepted (%)")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8)
        out.append(("Commands accepted per family and condition (target 97 %)", _png(fig)))
        fig, ax = plt.subplots(figsize=(7, 3.2))
        vals = [100.0 * (fams[f]["near_miss_accepted"].get("rate") or 0.0) for f in names]
        ax.bar(names, vals, color="tab:red")
        ax.axhline(1, color="k", lw=0.8, ls="--")
        ax.set_ylabel("near misses accepted (%)")
        out.append(("Near-miss sentences accepted (target ≤ 1 %)", _png(fig)))
    rows = res.get("clip_results", [])
    conf_cmd = [r["confidence"] for r in rows if r["kind"] == "command" and r["split"] == "test"]
    conf_nm = [r["confidence"] for r in rows if r["kind"] != "command" and r["split"] == "test"]
    if conf_cmd:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        bins = [k / 40 for k in range(41)]
        ax.hist(conf_cmd, bins, alpha=0.6, label="commands")
        ax.hist(conf_nm, bins, alpha=0.6, label="near misses + real")
        ax.set_xlabel("recognizer confidence")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        out.append(("Recognizer confidence (test split)", _png(fig)))
        rtfs = [r["cpu_s"] / r["duration_s"] for r in rows if r["duration_s"] > 0]
        fig, ax = plt.subplots(figsize=(7, 3.0))
        ax.hist(rtfs, 50)
        ax.axvline(0.05, color="k", lw=0.8, ls="--")
        ax.set_xlabel("RTF per segment (CPU s / audio s)")
        out.append(("Recognizer real-time factor per segment (target ≤ 0.05)", _png(fig)))
    bg = [(n, s) for n, s in res["scenes"].items() if not n.startswith("commands")]
    if bg:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        w = 0.8 / len(_POLICIES)
        for i, (p, label) in enumerate(_POLICIES):
            vals = [s["false_per_hour"][p] or 0.0 for _, s in bg]
            ax.bar(np.arange(len(bg)) + i * w, vals, w, label=label)
        ax.set_xticks(np.arange(len(bg)) + w, [n for n, _ in bg], fontsize=8)
        ax.set_ylabel("false commands per hour")
        ax.set_yscale("symlog")
        ax.legend(fontsize=8)
        out.append(
            ("False commands per hour of talk: fused vs audio-only vs image-only", _png(fig))
        )
    return out


def write_html(res: dict[str, Any], path: Path) -> None:
    parts = [
        "<!doctype html><meta charset='utf-8'><title>edge-agent evaluate</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "pre{background:#f4f4f4;padding:1em;overflow-x:auto}</style>",
        "<h1>edge-agent evaluate</h1>",
        f"<pre>{html.escape(table(res))}</pre>",
    ]
    try:
        plots = _plots(res)
    except ImportError:  # the table still counts; only the pictures need the extra
        plots = []
        parts.append("<p>No plots: pip install 'edge-agent[eval]' (matplotlib).</p>")
    for title, png in plots:
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='' src='data:image/png;base64,{png}'>")
    parts.append("<h2>Voices</h2><pre>")
    parts.append(html.escape(json.dumps(res["meta"].get("voices", {}), indent=1)))
    parts.append("</pre>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def write_json(res: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")


__all__ = ["table", "write_html", "write_json"]
