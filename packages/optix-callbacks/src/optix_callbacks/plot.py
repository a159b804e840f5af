"""Learning curves of optix runs, drawn with matplotlib (this package's ``plot`` extra).

``optix plot RUN...`` reads and checks the runs, then calls ``plot_runs``;
from Python::

    from optix_callbacks.plot import plot_runs, read_run
    plot_runs([read_run("runs/CartPole-v1-cem-20250101-120000")], "curves.png")

The top panel is the score against env steps: the raw training score of each
evaluation (thin), its smoothed score (bold), the selection score that judged
the checkpoint candidate (hollow circles), new bests, i.e. a new best checkpoint
(gold stars), and rollbacks (red dashed lines, where the cumulative
``rollbacks`` count grows). The scheduler's state is drawn as light background
bands (ACTIVE, COOLING, DORMANT) for one run; for several runs, as one strip
per run under the scores. The bottom panel, only when some numeric
hyperparameter changed during a run (online tuning), traces each such
hyperparameter: on its own axis when there is one, else each normalised to
its range, which its legend label gives.

Several runs are overlaid, one colour each, labelled "env algo seed N". Runs
that differ only by seed (same environment, algorithm, backend, hyperparameters
and online tuning) are one drawing instead: the mean of their smoothed scores,
interpolated onto the env steps all of them reached, with their min–max spread
shaded, and each seed's smoothed score dotted, over all of its env steps; a
group draws no raw scores, selection scores or new bests, only its rollbacks.

Only matplotlib's object API is used (``Figure`` with the Agg canvas), never
pyplot, so drawing changes no global state and needs no display. The image is
exactly ``width`` x ``height`` pixels at ``dpi`` (an SVG: that size in points
x 72 / dpi).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from optix_core.runs import env_label

FORMATS = ("png", "svg")
# tab10 without its red, which marks rollbacks
RUN_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
STATE_COLOURS = {"ACTIVE": "#dcf0dc", "COOLING": "#fde7c4", "DORMANT": "#dfe3f0"}
BEST_COLOUR = "#ffc000"
ROLLBACK_COLOUR = "#d62728"
SPREAD_ALPHA = 0.25
HYPERPARAM_STYLES = ("-", "--", ":", "-.")


def read_run(path: str | Path) -> dict[str, Any]:
    """One run as ``plot_runs`` takes it: name, path, config, metrics (the lines of
    ``metrics.jsonl``) and report (``{}`` before the run has finished)."""
    from optix_core.runs import CONFIG, REPORT, read_metrics

    run_dir = Path(path)
    report_path = run_dir / REPORT
    return {
        "name": run_dir.resolve().name,
        "path": str(run_dir),
        "config": json.loads((run_dir / CONFIG).read_text()),
        "metrics": read_metrics(run_dir),
        "report": json.loads(report_path.read_text()) if report_path.is_file() else {},
    }


def plot_runs(
    runs: Sequence[Mapping[str, Any]],
    output: str | Path,
    *,
    width: int = 1200,
    height: int = 800,
    dpi: int = 100,
    fmt: str | None = None,
) -> Path:
    """Draw ``runs`` (``read_run``'s dicts, each with at least one evaluation) to
    ``output`` as a ``width`` x ``height`` image; ``fmt`` png or svg (default:
    ``output``'s suffix, else png). Returns the path written."""
    output = Path(output)
    fmt = fmt or (output.suffix.lstrip(".").lower() or "png")
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if not runs:
        raise ValueError("plot_runs needs at least one run")
    for run in runs:
        if not run.get("metrics"):
            raise ValueError(f"run {run.get('name')} has no evaluations to plot")
    figure = draw(runs, width=width, height=height, dpi=dpi)
    with warnings.catch_warnings():  # a small image is drawn cramped, but drawn
        warnings.filterwarnings("ignore", message="constrained_layout not applied")
        figure.savefig(output, format=fmt, dpi=dpi)
    return output


def draw(runs: Sequence[Mapping[str, Any]], width: int, height: int, dpi: int) -> Figure:
    """The figure of ``plot_runs``, not yet saved."""
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    figure.set_layout_engine("constrained")
    drawings = _drawings(runs)
    traces = [_hyperparam_traces(run) for run in runs]
    names = sorted({name for trace in traces for name in trace})
    several = len(runs) > 1
    rows, ratios = ["scores"], [3.0]
    if several:
        rows.append("states")
        ratios.append(0.12 * len(runs) + 0.1)
    if names:
        rows.append("hyperparams")
        ratios.append(1.3)
    axes = figure.subplots(len(rows), 1, sharex=True, height_ratios=ratios, squeeze=False)[:, 0]
    panel = dict(zip(rows, axes, strict=True))
    scores = panel["scores"]

    colour_of: dict[int, str] = {}
    handles: list[Any] = []
    labels: list[str] = []
    for colour, drawing in zip(_colours(len(drawings)), drawings, strict=True):
        if len(drawing) > 1:
            handle, label = _draw_group(scores, drawing, colour)
        else:
            handle, label = _draw_run(scores, drawing[0], colour)
        handles.append(handle)
        labels.append(label)
        for run in drawing:
            colour_of[id(run)] = colour
            _draw_rollbacks(scores, run)
    if several:
        states_seen = _draw_state_strips(panel["states"], runs, colour_of)
    else:
        states_seen = _draw_state_bands(scores, runs[0])
    if names:
        _draw_hyperparams(panel["hyperparams"], runs, traces, names, colour_of)

    handles += _key_handles(runs, drawings, states_seen)
    labels += [h.get_label() for h in handles[len(labels) :]]
    figure.legend(handles, labels, loc="outside right upper", fontsize="small")

    scores.set_ylabel("score")
    scores.set_title(_title(runs))
    scores.grid(True, alpha=0.3)
    axes[-1].set_xlabel("env steps")
    axes[-1].xaxis.set_major_formatter(FuncFormatter(_steps))
    axes[-1].set_xlim(left=0)
    return figure


# ---- what is drawn -----------------------------------------------------------


def _drawings(runs: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Runs that differ only by seed together (a mean ± spread), every other run alone."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault(_experiment(run), []).append(run)
    drawings: list[list[Mapping[str, Any]]] = []
    for members in groups.values():
        members = sorted(members, key=lambda r: _seed_order(r["config"].get("seed")))
        if len(members) > 1 and _common_grid(members) is not None:
            drawings.append(members)
        else:
            drawings.extend([run] for run in members)
    return drawings


def _experiment(run: Mapping[str, Any]) -> str:
    config = run["config"]
    hyperparams = {k: v for k, v in (config.get("hyperparams") or {}).items() if k != "seed"}
    key = [config.get(k) for k in ("env_id", "algo", "backend")]
    options = [config.get("env_kwargs") or {}, hyperparams, config.get("online_tuning") or {}]
    return json.dumps([*key, *options], sort_keys=True)


def _seed_order(seed: Any) -> tuple[int, str]:
    return (0, f"{seed:020d}") if isinstance(seed, int) else (1, str(seed))


def _series(run: Mapping[str, Any], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(env steps, values) of ``key`` where both are numbers."""
    points = [
        (line["env_steps"], line[key])
        for line in run["metrics"]
        if _number(line.get("env_steps")) and _number(line.get(key))
    ]
    if not points:
        return np.zeros(0), np.zeros(0)
    xs, ys = zip(*points, strict=True)
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def _common_grid(members: Sequence[Mapping[str, Any]]) -> np.ndarray | None:
    """The env steps within the range every member's smoothed score covers, or None."""
    series = [_series(run, "smoothed") for run in members]
    if any(len(xs) == 0 for xs, _ in series):
        return None
    low = max(float(xs.min()) for xs, _ in series)
    high = min(float(xs.max()) for xs, _ in series)
    if high <= low:
        return None
    steps = np.unique(np.concatenate([xs for xs, _ in series]))
    return steps[(steps >= low) & (steps <= high)]


def _draw_run(ax: Any, run: Mapping[str, Any], colour: str) -> tuple[Any, str]:
    xs, raw = _series(run, "raw")
    ax.plot(xs, raw, color=colour, linewidth=0.8, alpha=0.45, zorder=2)
    xs, smoothed = _series(run, "smoothed")
    lone = "o" if len(xs) == 1 else None  # one evaluation: a point, not a line
    (line,) = ax.plot(xs, smoothed, color=colour, linewidth=2.4, marker=lone, zorder=3)
    xs, selection = _series(run, "selection")
    ax.plot(
        xs,
        selection,
        linestyle="none",
        marker="o",
        markersize=4.5,
        markerfacecolor="white",
        markeredgecolor=colour,
        markeredgewidth=1.2,
        zorder=4,
    )
    best = [
        (line_["env_steps"], _best_value(line_))
        for line_ in run["metrics"]
        if line_.get("best_window") is not None
        and line_.get("best_window") == line_.get("window")
        and _number(line_.get("env_steps"))
        and _best_value(line_) is not None
    ]
    if best:
        bx, by = zip(*best, strict=True)
        ax.plot(
            bx,
            by,
            linestyle="none",
            marker="*",
            markersize=10,
            markerfacecolor=BEST_COLOUR,
            markeredgecolor="#6b5000",
            markeredgewidth=0.6,
            zorder=5,
        )
    return line, _label(run["config"])


def _best_value(line: Mapping[str, Any]) -> float | None:
    for key in ("best", "selection", "smoothed"):
        if _number(line.get(key)):
            return float(line[key])
    return None


def _draw_group(ax: Any, members: Sequence[Mapping[str, Any]], colour: str) -> tuple[Any, str]:
    grid = _common_grid(members)
    assert grid is not None  # _drawings groups only runs that share a range
    curves = np.stack([np.interp(grid, *_series(run, "smoothed")) for run in members])
    ax.fill_between(
        grid,
        curves.min(axis=0),
        curves.max(axis=0),
        color=colour,
        alpha=SPREAD_ALPHA,
        linewidth=0,
        zorder=1,
    )
    (line,) = ax.plot(grid, curves.mean(axis=0), color=colour, linewidth=2.4, zorder=3)
    for run in members:  # each seed whole, beyond the range they share too
        ax.plot(*_series(run, "smoothed"), color=colour, linewidth=0.9, linestyle=":", zorder=2)
    config = members[0]["config"]
    seeds = ", ".join(str(run["config"].get("seed")) for run in members)
    label = (
        f"{config.get('env_id')} {config.get('algo')} seeds {seeds}: "
        f"mean of {len(members)}, shaded min–max"
    )
    return (line, Patch(color=colour, alpha=SPREAD_ALPHA, linewidth=0)), label


def _rollbacks(run: Mapping[str, Any]) -> list[float]:
    """Env steps of the evaluations after which the cumulative rollback count grew."""
    found, before = [], 0.0
    for line in run["metrics"]:
        count = (line.get("metrics") or {}).get("rollbacks")
        if not _number(count):
            continue
        if count > before and _number(line.get("env_steps")):
            found.append(float(line["env_steps"]))
        before = max(before, float(count))
    return found


def _draw_rollbacks(ax: Any, run: Mapping[str, Any]) -> None:
    for x in _rollbacks(run):
        ax.axvline(x, color=ROLLBACK_COLOUR, linestyle="--", linewidth=1.4, zorder=2.5)


def _state_spans(run: Mapping[str, Any]) -> list[tuple[float, float, str]]:
    """(from, to, state): each evaluation's state holds from its env steps to the
    next evaluation's (the loop starts ACTIVE), the last one to the run's end, and
    at least a sliver wide, so that the state a run ended in shows."""
    points = [
        (float(line["env_steps"]), str(line["state"]))
        for line in run["metrics"]
        if _number(line.get("env_steps")) and line.get("state") in STATE_COLOURS
    ]
    if not points:
        return []
    end = (run.get("report") or {}).get("env_steps")
    end = max(float(end) if _number(end) else 0.0, points[-1][0] * 1.015)
    edges = [(0.0, "ACTIVE"), *points]
    spans: list[tuple[float, float, str]] = []
    for (start, state), stop in zip(edges, [x for x, _ in points] + [end], strict=True):
        if stop <= start:
            continue
        if spans and spans[-1][2] == state and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], stop, state)
        else:
            spans.append((start, stop, state))
    return spans


def _draw_state_bands(ax: Any, run: Mapping[str, Any]) -> set[str]:
    spans = _state_spans(run)
    for start, stop, state in spans:
        ax.axvspan(start, stop, color=STATE_COLOURS[state], linewidth=0, zorder=0)
    return {state for _, _, state in spans}


def _draw_state_strips(
    ax: Any, runs: Sequence[Mapping[str, Any]], colour_of: dict[int, str]
) -> set[str]:
    seen: set[str] = set()
    for row, run in enumerate(runs):
        for start, stop, state in _state_spans(run):
            ax.broken_barh(
                [(start, stop - start)], (row + 0.1, 0.8), facecolors=STATE_COLOURS[state]
            )
            seen.add(state)
    labels = _strip_labels(runs)
    ax.set_yticks([row + 0.5 for row in range(len(runs))], labels=labels, fontsize="x-small")
    for tick, run in zip(ax.get_yticklabels(), runs, strict=True):
        tick.set_color(colour_of[id(run)])
    ax.set_ylim(len(runs), 0)
    ax.set_ylabel("state")
    ax.tick_params(axis="y", length=0)
    return seen


def _hyperparam_traces(run: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The numeric hyperparameters whose value changed during the run: (env steps, values)."""
    values: dict[str, list[tuple[float, float]]] = {}
    for line in run["metrics"]:
        if not _number(line.get("env_steps")):
            continue
        for name, value in (line.get("hyperparams") or {}).items():
            if _number(value) and math.isfinite(value):
                values.setdefault(name, []).append((float(line["env_steps"]), float(value)))
    return {
        name: (np.array([x for x, _ in points]), np.array([v for _, v in points]))
        for name, points in values.items()
        if len({v for _, v in points}) > 1
    }


def _draw_hyperparams(
    ax: Any,
    runs: Sequence[Mapping[str, Any]],
    traces: Sequence[dict[str, tuple[np.ndarray, np.ndarray]]],
    names: Sequence[str],
    colour_of: dict[int, str],
) -> None:
    ranges = {
        name: (
            min(float(t[name][1].min()) for t in traces if name in t),
            max(float(t[name][1].max()) for t in traces if name in t),
        )
        for name in names
    }
    alone = len(names) == 1
    for run, trace in zip(runs, traces, strict=True):
        for index, name in enumerate(names):
            if name not in trace:
                continue
            xs, ys = trace[name]
            if not alone:
                low, high = ranges[name]
                ys = (ys - low) / (high - low)
            ax.plot(
                xs,
                ys,
                drawstyle="steps-post",
                color=colour_of[id(run)],
                linestyle=HYPERPARAM_STYLES[index % len(HYPERPARAM_STYLES)],
                linewidth=1.4,
            )
    if alone:
        name = names[0]
        low, high = ranges[name]
        if low > 0 and high / low >= 20:
            ax.set_yscale("log")
        ax.set_ylabel(name)
    else:
        ax.set_ylabel("hyperparameters\n(each to its range)")
        ax.set_ylim(-0.05, 1.05)
        key = [
            Line2D(
                [],
                [],
                color="0.25",
                linestyle=HYPERPARAM_STYLES[i % len(HYPERPARAM_STYLES)],
                label=f"{name}: {ranges[name][0]:.3g} – {ranges[name][1]:.3g}",
            )
            for i, name in enumerate(names)
        ]
        ax.legend(handles=key, loc="upper left", fontsize="x-small", framealpha=0.85)
    ax.grid(True, alpha=0.3)


def _key_handles(
    runs: Sequence[Mapping[str, Any]],
    drawings: Sequence[Sequence[Mapping[str, Any]]],
    states: set[str],
) -> list[Any]:
    """The legend's entries for what each mark means, for the marks drawn."""
    grey = "0.3"
    handles: list[Any] = []
    if any(len(d) == 1 for d in drawings):
        handles += [
            Line2D([], [], color=grey, linewidth=0.8, alpha=0.6, label="raw score"),
            Line2D([], [], color=grey, linewidth=2.4, label="smoothed score"),
            Line2D(
                [],
                [],
                linestyle="none",
                marker="o",
                markerfacecolor="white",
                markeredgecolor=grey,
                label="selection score",
            ),
            Line2D(
                [],
                [],
                linestyle="none",
                marker="*",
                markersize=10,
                markerfacecolor=BEST_COLOUR,
                markeredgecolor="#6b5000",
                label="new best (checkpoint)",
            ),
        ]
    if any(len(d) > 1 for d in drawings):
        handles.append(
            Line2D([], [], color=grey, linewidth=0.9, linestyle=":", label="one seed (smoothed)")
        )
    if any(_rollbacks(run) for run in runs):
        handles.append(
            Line2D([], [], color=ROLLBACK_COLOUR, linestyle="--", linewidth=1.4, label="rollback")
        )
    handles += [
        Patch(color=colour, label=state)
        for state, colour in STATE_COLOURS.items()
        if state in states
    ]
    return handles


# ---- labels --------------------------------------------------------------------


def _label(config: Mapping[str, Any]) -> str:
    return f"{env_label(config)} {_algo(config)} seed {config.get('seed')}"


def _algo(config: Mapping[str, Any]) -> str:
    return f"{config.get('algo')} ({config.get('backend')})"


def _strip_labels(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each state strip's name: its seed, or all of its label where the runs
    differ by more than their seeds."""
    full = len(_unique(f"{env_label(r['config'])} {_algo(r['config'])}" for r in runs)) > 1
    return [_label(r["config"]) if full else f"seed {r['config'].get('seed')}" for r in runs]


def _title(runs: Sequence[Mapping[str, Any]]) -> str:
    envs = _unique(env_label(run["config"]) for run in runs)
    algos = _unique(_algo(run["config"]) for run in runs)
    return f"{', '.join(envs)} — {', '.join(algos)}"


def _unique(items: Any) -> list[str]:
    return list(dict.fromkeys(items))


def _colours(n: int) -> list[str]:
    return [RUN_COLOURS[i % len(RUN_COLOURS)] for i in range(n)]


def _steps(value: float, _position: Any) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
