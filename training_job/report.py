"""A small human report per run: ``report.html`` with metrics vs baselines, the gate decision, the
chosen parameters, timings, and PNG plots (learning curves, comparison, tuning), stored next to the
artifact."""

from __future__ import annotations

import html
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a server; must precede pyplot
import matplotlib.pyplot as plt

from training_job.gate import GateDecision, versus_strongest

HEADLINE = ("hr@10", "ndcg@10", "full_hr@10", "full_ndcg@10", "coverage@10")


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def learning_curves(history: Sequence[Mapping[str, float]], als_validation_ndcg: float | None) -> bytes:
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [h["epoch"] for h in history]
    left.plot(epochs, [h["loss"] for h in history], marker="o")
    left.set(title="training loss (BCE)", xlabel="epoch")
    right.plot(epochs, [h["val_hr"] for h in history], marker="o", label="NeuMF HR@10")
    right.plot(epochs, [h["val_ndcg"] for h in history], marker="o", label="NeuMF NDCG@10")
    if als_validation_ndcg is not None:
        right.axhline(als_validation_ndcg, color="grey", linestyle="--", label="tuned ALS NDCG@10")
    right.set(title="validation (99 sampled negatives)", xlabel="epoch")
    right.legend(fontsize=8)
    return _png(figure)


def comparison(metrics: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]]) -> bytes:
    models = {"NeuMF": metrics, **baselines}
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for axis, keys, title in (
        (axes[0], ("hr@10", "ndcg@10"), "sampled (1 + 99 negatives)"),
        (axes[1], ("full_hr@10", "full_ndcg@10"), "full ranking (all unseen movies)"),
    ):
        width = 0.8 / len(models)
        for i, (name, values) in enumerate(models.items()):
            axis.bar(
                [j + i * width for j in range(len(keys))],
                [values.get(k, 0.0) for k in keys],
                width=width,
                label=name,
            )
        axis.set_xticks([j + 0.4 - width / 2 for j in range(len(keys))], list(keys))
        axis.set_title(title)
    axes[0].legend(fontsize=8)
    return _png(figure)


def tuning(trials: Mapping[str, Sequence[Mapping[str, Any]]]) -> bytes:
    figure, axis = plt.subplots(figsize=(6, 3.6))
    for name, rows in trials.items():
        done = [
            (t["number"], t["value"]) for t in rows if t.get("value") is not None and t["state"] == "COMPLETE"
        ]
        if not done:
            continue
        numbers, values = zip(*done, strict=True)
        best = [max(values[: i + 1]) for i in range(len(values))]
        axis.scatter(numbers, values, s=12, label=f"{name} trials")
        axis.plot(numbers, best, label=f"{name} best so far")
    axis.set(title="tuning: validation NDCG@10", xlabel="trial")
    axis.legend(fontsize=8)
    return _png(figure)


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        return f"<td>{html.escape(text)}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def champion_section(metrics: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]]) -> str:
    """Who won: the model against each metric's strongest baseline, on validation (what the gate
    decides on) and on test (what the run reports), with the difference."""
    found = versus_strongest(metrics, baselines)
    rows, lines = [], []
    for split, per_metric in found.items():
        for name, row in per_metric.items():
            gap, base = float(row["difference"]), float(row["baseline"])
            winner = "NeuMF" if gap > 0 else str(row["strongest"])
            relative = f"{100 * gap / base:+.1f}%" if base else ""
            rows.append(
                [split, name, row["model"], f"{row['strongest']} {base:.4f}", f"{gap:+.4f}", relative, winner]
            )
            if split == "test":
                loser = str(row["strongest"]) if gap > 0 else "NeuMF"
                lines.append(f"{name}: {winner} won by {abs(gap):.4f} over {loser}")
    if not rows:
        return ""
    header = ["split", "metric", "NeuMF", "strongest baseline", "difference", "relative", "won"]
    summary = f"<p>On test: {html.escape('; '.join(lines))}.</p>" if lines else ""
    return f"<h2>Champion (NeuMF against the strongest baseline)</h2>{summary}{_table(rows, header)}"


def segment_section(segments: Mapping[str, Any]) -> str:
    """Each segment definition tried: validation (the choice) and test lift over global popularity."""
    if not segments:
        return ""
    rows = []
    for name, c in segments.get("candidates", {}).items():
        mark = " (chosen)" if name == segments.get("definition") else ""
        rows.append(
            [
                name + mark,
                f"{c['coverage']:.0%}",
                c["segments"],
                f"{c['shrink']:g}",
                c.get("validation_ndcg@10", ""),
                c.get("hr@10", ""),
                c.get("ndcg@10", ""),
                f"{c['lift_hr@10_pct']:+.1f}%" if "lift_hr@10_pct" in c else "",
                f"{c['lift_ndcg@10_pct']:+.1f}%" if "lift_ndcg@10_pct" in c else "",
            ]
        )
    base = segments.get("global", {})
    rows.append(["global popularity", "", "", "", base.get("validation_ndcg@10", ""), base.get("hr@10", ""),
                 base.get("ndcg@10", ""), "", ""])  # fmt: skip
    header = ["definition", "coverage", "segments", "shrink", "val NDCG@10", "HR@10", "NDCG@10",
              "lift HR@10", "lift NDCG@10"]  # fmt: skip
    skipped = "".join(
        f"<li>{html.escape(name)}: {html.escape(why)}</li>"
        for name, why in segments.get("skipped", {}).items()
    )
    trending = _table(
        [[w, ndcg] for w, ndcg in segments.get("trending_validation_ndcg@10", {}).items()],
        ["trending weight", "val NDCG@10"],
    )
    served = segments.get("trending_test", {})
    served_line = (
        f"<p>Served (chosen segments, trending weight {segments.get('trending_weight')}) on test: "
        f"HR@10 {served.get('hr@10', 0.0):.4f} ({served.get('lift_hr@10_pct', 0.0):+.1f}%), "
        f"NDCG@10 {served.get('ndcg@10', 0.0):.4f} ({served.get('lift_ndcg@10_pct', 0.0):+.1f}%) "
        "against global popularity.</p>"
        if served
        else ""
    )
    window_hours = float(segments.get("trending_window_seconds", 0.0)) / 3600
    return (
        "<h2>Segment popularity (chosen on validation; lift over global popularity on test)</h2>"
        f"{_table(rows, header)}"
        + (f"<p>Not tried:</p><ul>{skipped}</ul>" if skipped else "")
        + f"<p>Trending replayed over the {window_hours:g} h before each validation pair:</p>{trending}"
        + served_line
    )


def build_report(
    title: str,
    metrics: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    params: Mapping[str, Any],
    timings: Mapping[str, float],
    history: Sequence[Mapping[str, float]],
    trials: Mapping[str, Sequence[Mapping[str, Any]]],
    summary: Mapping[str, Any],
    gate: GateDecision | None = None,
    segments: Mapping[str, Any] | None = None,
) -> dict[str, bytes]:
    """``{"report.html": ..., "learning_curves.png": ..., "comparison.png": ..., "tuning.png": ...}``."""
    als_val = baselines.get("als", {}).get("validation_ndcg@10")
    files = {
        "learning_curves.png": learning_curves(history, als_val),
        "comparison.png": comparison(metrics, baselines),
        "tuning.png": tuning(trials),
    }
    models = {"NeuMF": metrics, **baselines}
    headline = _table(
        [[name, *(m.get(k, "") for k in HEADLINE)] for name, m in models.items()], ["model", *HEADLINE]
    )
    extra = _table(sorted((k, v) for k, v in metrics.items() if k not in HEADLINE), ["metric", "NeuMF"])
    gate_html = ""
    if gate is not None:
        verdict = "PASSED" if gate.passed else "REJECTED"
        items = "".join(f"<li>{html.escape(c)}</li>" for c in gate.checks)
        gate_html = f"<h2>Gate: {verdict}</h2><p>{html.escape(gate.reason)}</p><ul>{items}</ul>"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} th{{background:#eee}}
pre{{background:#f6f6f6;padding:1em}}
</style>
</head><body>
<h1>{html.escape(title)}</h1>
{_table(sorted(summary.items()), ["", ""])}
{gate_html}
{champion_section(metrics, baselines)}
<h2>Test metrics vs baselines (same run, same split)</h2>{headline}
<img src="comparison.png" alt="model vs baselines">
<h2>Learning curves (the chosen configuration, on validation)</h2><img src="learning_curves.png" alt="curves">
<h2>Tuning (validation only)</h2><img src="tuning.png" alt="tuning">
{segment_section(segments or {})}
<h2>All model metrics</h2>{extra}
<h2>Chosen parameters</h2><pre>{html.escape(json.dumps(params, indent=2, sort_keys=True))}</pre>
<h2>Timings</h2>{_table(sorted(timings.items()), ["", "value"])}
</body></html>
"""
    files["report.html"] = page.encode()
    return files
