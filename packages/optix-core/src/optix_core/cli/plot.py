"""``optix runs [DIR ...]`` and ``optix plot RUN [RUN ...]``: look at run directories.

``optix runs`` lists what ``optix train`` wrote under each DIR (default ``runs``):
one line per run, oldest first, with what it trained, its best score, its final
evaluation and where it stands. It reads JSON files only: no framework and no
numpy is imported, and a damaged run is listed with its problem, not a crash.

``optix plot`` checks every RUN (a run directory with at least one evaluation
in ``metrics.jsonl``) before it imports anything heavy, then hands the runs to
the renderer of optix-callbacks' ``plot`` extra (``optix_callbacks.plot``):
optix-core does not depend on matplotlib. Bad input, or a missing renderer, is
one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from optix_core.cli.errors import UsageError
from optix_core.cli.info import table
from optix_core.runs import CHECKPOINTS, CONFIG, METRICS, REPORT, env_label, read_metrics

LOCK = ".lock"  # the checkpoint registry's writer lock: it holds the writer's pid

FORMATS = ("png", "svg")
SIZE = (100, 16384)  # pixels: a smaller image has no room for its axes, Agg draws no larger
DPI = (10, 1200)  # below 10, fonts cannot be drawn
INSTALL = "pip install 'optix-callbacks[plot]'"
# new_run_dir's names end in the time the run started: <env>-<algo>-YYYYmmdd-HHMMSS[-N]
_STAMP = re.compile(r"(\d{8}-\d{6})(?:-\d+)?$")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("runs", help="list the run directories under each DIR, oldest first")
    p.add_argument(
        "dirs",
        nargs="*",
        default=["runs"],
        metavar="DIR",
        help="where runs are, or a run directory (default: runs)",
    )
    p.set_defaults(handler=cmd_runs)

    p = sub.add_parser(
        "plot",
        help="draw runs' learning curves to an image",
        description="Draw the learning curves of one or more runs: raw, smoothed and selection "
        "scores against env steps, the scheduler's state, new bests, rollbacks and the "
        "hyperparameters tuned online. Runs that differ only by seed are drawn as their mean "
        f"with its min-max spread. Needs matplotlib: {INSTALL}.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by optix train")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the image to write (default: RUN/curves.png for one run, ./curves.png for several)",
    )
    p.add_argument(
        "--format", choices=FORMATS, help="png or svg (default: FILE's suffix, else png)"
    )
    p.add_argument("--width", type=int, default=1200, metavar="PX", help="default: 1200")
    p.add_argument("--height", type=int, default=800, metavar="PX", help="default: 800")
    p.add_argument("--dpi", type=int, default=100, help="pixels per inch (default: 100)")
    p.set_defaults(handler=cmd_plot)


# ---- optix runs --------------------------------------------------------------


def cmd_runs(args: argparse.Namespace) -> int:
    roots = [Path(d) for d in args.dirs]
    listed = {run.resolve(): run for root in roots for run in _runs_under(root)}
    candidates = list(listed.values())  # a run named twice is listed once
    if not candidates:
        print(f"optix: no run directories under {', '.join(map(str, roots))}")
        return 0
    rows = sorted(
        (_row(path, name) for path, name in zip(candidates, _names(candidates), strict=True)),
        key=lambda r: (r[0], r[1][0]),
    )
    header = ["run", "env", "algo", "backend", "seed", "best", "final eval"]
    header += ["env steps (+ selection)", "wall time", "state"]
    print(table(header, [row for _, row in rows]))
    return 0


def _names(runs: list[Path]) -> list[str]:
    """Each run's name; runs of several folders (a suite's sides and seeds) are all
    named with their folder, or by their whole path where that is shared."""
    names = [run.resolve().name for run in runs]
    if len({run.resolve().parent for run in runs}) == 1:
        return names
    with_folder = [f"{r.resolve().parent.name}/{n}" for r, n in zip(runs, names, strict=True)]
    return [
        longer if with_folder.count(longer) == 1 else str(run)
        for run, longer in zip(runs, with_folder, strict=True)
    ]


def _runs_under(root: Path) -> list[Path]:
    """``root`` if it is a run, and the runs directly under it."""
    if not root.exists():
        raise UsageError(f"{root} does not exist (optix train writes runs under --run-dir runs)")
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory")
    runs = [root] if _looks_like_run(root) else []
    try:
        return runs + sorted(p for p in root.iterdir() if p.is_dir() and _looks_like_run(p))
    except OSError as exc:
        raise UsageError(f"cannot read {root}: {exc.strerror}") from None


def _looks_like_run(path: Path) -> bool:
    """What optix train writes: a directory with a config, metrics, a report or
    checkpoints (a damaged run lacks some of them). optix tune's sweeps are not runs."""
    return any((path / name).exists() for name in (CONFIG, METRICS, REPORT, CHECKPOINTS))


def _row(path: Path, name: str) -> tuple[float, list[str]]:
    """(start time, the table row) of one run, named ``name``; its problem in the
    state column."""
    problems: list[str] = []
    try:
        config = read_config(path)
    except UsageError as exc:
        config = {}
        problems.append(str(exc).replace(f"{path}/", "").replace(f"{path} ", ""))
    report = _read_report(path, problems)
    lines = read_metrics(path)
    last = lines[-1] if lines else {}
    final = report.get("final_eval") or {}
    final_eval = ""
    if isinstance(final, dict) and _is_number(final.get("mean")):  # as the report prints it
        std = final.get("std")
        final_eval = f"{final['mean']:.1f}" + (f" ± {std:.1f}" if _is_number(std) else "")
    steps = report.get("env_steps", last.get("env_steps"))
    wall = report.get("wall_time", last.get("time"))
    budget = config.get("max_env_steps")
    row = [
        name,
        env_label(config),
        str(config.get("algo", "")),
        str(config.get("backend", "")),
        str(config.get("seed", "")),
        _num(report["best_score"] if "best_score" in report else last.get("best")),
        final_eval,
        _steps(steps, report.get("selection_env_steps"), None if report else budget),
        _duration(wall),
        "; ".join(problems) if problems else _state(path, report, last),
    ]
    return _started(path, name), row


def _steps(training: Any, selection: Any, budget: Any = None) -> str:
    """Env steps as the report counts them: training, + those that chose checkpoints;
    "of BUDGET" for a run still under way with --max-steps."""
    if not isinstance(training, int):
        return ""
    return (
        f"{training:,}"
        + (f" + {selection:,}" if isinstance(selection, int) and selection else "")
        + (f" of {budget:,}" if isinstance(budget, int) else "")
    )


def _read_report(path: Path, problems: list[str]) -> dict[str, Any]:
    file = path / REPORT
    if not file.is_file():
        return {}
    try:
        report = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{REPORT} is damaged ({type(exc).__name__})")
        return {}
    if not isinstance(report, dict):
        problems.append(f"{REPORT} is damaged (not a JSON object)")
        return {}
    return report


def _state(path: Path, report: dict[str, Any], last: dict[str, Any]) -> str:
    """The scheduler's state where the run ended (DORMANT: converged; "ACTIVE, max
    windows": its budget ran out while it still improved), "interrupted"
    (Ctrl-C; --resume continues it), "running", or "unfinished" (no report and no
    live writer: killed, crashed or diverged; --resume continues it)."""
    if report:
        if str(report.get("stop_reason", "")).startswith("interrupted"):
            return "interrupted"
        state = str(report.get("final_state", "finished"))
        for prefix, budget in (("max_episodes", "max windows"), ("max_env_steps", "max steps")):
            if str(report.get("stop_reason", "")).startswith(prefix):
                return f"{state}, {budget}"  # stopped by its budget, not converged
        return state
    if _writer_alive(path):
        return f"running ({last['state']})" if last.get("state") else "running"
    return "unfinished"


def _writer_alive(path: Path) -> bool:
    """Whether the process that wrote its pid into the checkpoint lock still lives.
    Only reads the file: taking the lock, even shared, could refuse a starting writer."""
    try:
        pid = int((path / CHECKPOINTS / LOCK).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # alive, another user's
    except (OSError, OverflowError):
        return False
    return True


def _started(path: Path, name: str) -> float:
    """When the run started: the time in its name, else its config's mtime."""
    match = _STAMP.search(name)
    if match:
        try:
            return time.mktime(time.strptime(match.group(1), "%Y%m%d-%H%M%S"))
        except (ValueError, OverflowError):
            pass
    for file in (path / CONFIG, path):
        try:
            return file.stat().st_mtime
        except OSError:
            continue
    return 0.0


def _num(value: Any) -> str:
    return f"{value:.4g}" if _is_number(value) else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _duration(seconds: Any) -> str:
    if not _is_number(seconds):
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# ---- optix plot --------------------------------------------------------------


def cmd_plot(args: argparse.Namespace) -> int:
    for flag, value, (low, high) in (
        ("--width", args.width, SIZE),
        ("--height", args.height, SIZE),
        ("--dpi", args.dpi, DPI),
    ):
        if not low <= value <= high:
            raise UsageError(f"{flag} must be between {low} and {high}, got {value}")
    runs = [load_plot_run(run) for run in args.runs]
    seen: dict[Path, str] = {}
    for given, run in zip(args.runs, runs, strict=True):
        key = Path(run["path"]).resolve()
        if key in seen:
            raise UsageError(f"{given} is given twice (as {seen[key]} too)")
        seen[key] = given
    output, fmt = _output(args, runs)
    try:
        from optix_callbacks import plot as renderer
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("optix_callbacks", "matplotlib"):
            raise
        raise UsageError(
            f"optix plot draws with matplotlib ({exc.name} is missing): {INSTALL}"
        ) from None
    written = renderer.plot_runs(
        runs, output, width=args.width, height=args.height, dpi=args.dpi, fmt=fmt
    )
    what = "1 run" if len(runs) == 1 else f"{len(runs)} runs"
    print(f"optix: wrote the curves of {what} to {written} ({args.width}x{args.height} {fmt})")
    return 0


def _output(args: argparse.Namespace, runs: list[dict[str, Any]]) -> tuple[Path, str]:
    """The file to write and its format: -o FILE and --format must agree."""
    if args.output is None:
        fmt = args.format or "png"
        folder = Path(runs[0]["path"]) if len(runs) == 1 else Path(".")
        return folder / f"curves.{fmt}", fmt
    output = Path(args.output)
    suffix = output.suffix.lower().lstrip(".")
    if suffix in FORMATS:
        if args.format and args.format != suffix:
            raise UsageError(f"-o {output} names a .{suffix} file but --format is {args.format}")
        fmt = suffix
    elif suffix and not args.format:
        raise UsageError(f"-o {output}: optix plot writes png or svg, not .{suffix}")
    else:
        fmt = args.format or "png"
    if output.is_dir():
        raise UsageError(f"-o {output} is a directory; name the image file to write")
    if not output.parent.is_dir():
        raise UsageError(f"-o {output}: directory {output.parent} does not exist")
    return output, fmt


def load_plot_run(path: str) -> dict[str, Any]:
    """What the renderer draws of one run: its name, path, config, evaluations and
    report; a UsageError when it is not a run or has no evaluation yet."""
    run_dir = Path(path)
    if not run_dir.exists():
        raise UsageError(f"run directory {path} does not exist")
    if not run_dir.is_dir():
        raise UsageError(f"{path} is not a run directory (it is a file)")
    config = read_config(run_dir)
    metrics = read_metrics(run_dir)
    if not metrics:
        raise UsageError(
            f"{path} has no evaluations yet ({METRICS} is empty or missing): nothing to plot"
        )
    return {
        "name": run_dir.resolve().name,
        "path": str(run_dir),
        "config": config,
        "metrics": metrics,
        "report": _read_report(run_dir, []),  # a damaged one is left out
    }


def read_config(run_dir: Path) -> dict[str, Any]:
    """``config.json`` as a dict with at least env_id, algo and backend; else a UsageError."""
    path = run_dir / CONFIG
    if not path.is_file():
        raise UsageError(f"{run_dir} is not an optix run directory: {CONFIG} is missing")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None
    if not isinstance(config, dict):
        raise UsageError(f"{path} is damaged (not a JSON object)")
    missing = [k for k in ("env_id", "algo", "backend") if not isinstance(config.get(k), str)]
    if missing:
        raise UsageError(f"{path} is damaged (no {', '.join(missing)})")
    return config
