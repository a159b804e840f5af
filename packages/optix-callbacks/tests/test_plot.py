"""``optix plot`` end to end: real runs of the framework-free ``cem`` agent, drawn
by the real matplotlib, and the images read back pixel by pixel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from optix_callbacks.plot import (
    BEST_COLOUR,
    ROLLBACK_COLOUR,
    RUN_COLOURS,
    SPREAD_ALPHA,
    STATE_COLOURS,
)
from optix_core.cli import main

FIRST = RUN_COLOURS[0]  # the first run's (or group's) colour


def train(root: Path, seed: int, *extra: str) -> Path:
    before = set(root.iterdir()) if root.exists() else set()
    argv = ["train", "CartPole-v1", "--algo", "cem", "--seed", str(seed), *extra]
    assert main([*argv, "--run-dir", str(root)]) == 0
    (run_dir,) = set(root.iterdir()) - before
    return run_dir


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 windows with the noise tuned online: every evaluation ACTIVE, and a
    hyperparameter that changes."""
    return train(tmp_path_factory.mktemp("tuned"), 0, "--max-windows", "12", "--tune")


@pytest.fixture(scope="module")
def converged_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained until the scheduler calls it converged (about 90 windows, seconds):
    ACTIVE, then COOLING, then DORMANT."""
    run_dir = train(tmp_path_factory.mktemp("converged"), 5)
    states = {line["state"] for line in lines(run_dir)}
    assert states == {"ACTIVE", "COOLING", "DORMANT"}, states
    return run_dir


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three runs that differ only by seed."""
    root = tmp_path_factory.mktemp("seeds")
    return [train(root, seed, "--max-windows", "8") for seed in (1, 2, 3)]


def lines(run_dir: Path) -> list[dict]:
    return [json.loads(raw) for raw in (run_dir / "metrics.jsonl").read_text().splitlines()]


def plot(*args: str | Path) -> int:
    return main(["plot", *map(str, args)])


def image(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def near(img: np.ndarray, colour: str, alpha: float = 1.0, tol: int = 6) -> np.ndarray:
    """Where ``img`` shows ``colour`` (drawn at ``alpha`` over white)."""
    rgb = np.round((alpha * np.array(to_rgb(colour)) + (1 - alpha)) * 255)
    return (np.abs(img - rgb) <= tol).all(axis=2)


def plot_area(img: np.ndarray) -> tuple[slice, slice]:
    """The score panel of a single run: where its state bands lie (they fill it)."""
    bands = np.zeros(img.shape[:2], dtype=bool)
    for colour in STATE_COLOURS.values():
        bands |= near(img, colour, tol=2)
    assert bands.sum() > 50_000, "no state bands behind the scores"
    # where the bands are, not the legend's swatches: rows and columns mostly band
    rows = np.nonzero(bands.sum(axis=1) > 0.3 * bands.shape[1])[0]
    cols = np.nonzero(bands.sum(axis=0) > 0.3 * bands.shape[0])[0]
    return slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)


def columns(mask: np.ndarray) -> int:
    """How many pixel columns ``mask`` touches."""
    return int(mask.any(axis=0).sum())


def test_one_run_draws_its_curves_bands_and_new_bests(tuned_run, tmp_path, capsys):
    output = tmp_path / "one.png"
    assert plot(tuned_run, "-o", output, "--width", "900", "--height", "600") == 0
    assert capsys.readouterr().out.strip().endswith(f"to {output} (900x600 png)")
    img = image(output)
    assert img.shape == (600, 900, 3)
    rows, cols = plot_area(img)
    scores = img[rows, cols]
    width = cols.stop - cols.start
    # the bold smoothed curve crosses most of the panel (a legend swatch or the
    # selection markers alone would touch a few dozen columns)
    assert columns(near(scores, FIRST)) > 0.5 * width
    assert near(scores, STATE_COLOURS["ACTIVE"], tol=2).sum() > 0.3 * scores[..., 0].size
    assert near(scores, BEST_COLOUR).sum() > 150  # gold stars on the curve, not the legend's
    # the noise tuned online, traced in the run's colour in a panel below the scores
    below = img[rows.stop + 5 :, cols]
    assert columns(near(below, FIRST)) > 0.4 * width


def test_a_converged_run_shows_every_state(converged_run, tmp_path):
    output = tmp_path / "converged.png"
    assert plot(converged_run, "-o", output) == 0
    img = image(output)
    assert img.shape == (800, 1200, 3)
    rows, cols = plot_area(img)
    scores = img[rows, cols]
    for state, colour in STATE_COLOURS.items():  # a band, not the legend's swatch
        assert near(scores, colour, tol=2).sum() > 2_000, state
    # the ACTIVE band comes first, DORMANT last
    first = {s: np.nonzero(near(scores, c, tol=2).any(axis=0))[0] for s, c in STATE_COLOURS.items()}
    assert first["ACTIVE"].min() < first["COOLING"].min() < first["DORMANT"].min()
    assert columns(near(scores, FIRST)) > 0.5 * (cols.stop - cols.start)
    # nothing was tuned online: no hyperparameter panel under the scores
    assert not near(img[rows.stop + 5 :, cols], FIRST).any()


def test_default_output_is_the_runs_curves_png_at_the_size_asked(tuned_run, capsys):
    output = tuned_run / "curves.png"
    # 9.04 inches at 100 dpi is 903.999... pixels in floating point: still 904 rows
    assert plot(tuned_run, "--width", "1035", "--height", "904", "--dpi", "100") == 0
    assert f"to {output} " in capsys.readouterr().out
    assert image(output).shape == (904, 1035, 3)
    output.unlink()


def test_svg(tuned_run, tmp_path):
    output = tmp_path / "curves.svg"
    assert plot(tuned_run, "-o", output, "--width", "1000", "--height", "600", "--dpi", "80") == 0
    root = ET.parse(output).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (root.get("width"), root.get("height")) == ("900pt", "540pt")  # 1000 x 600 px at 80 dpi
    text = output.read_text()
    assert FIRST in text and STATE_COLOURS["ACTIVE"] in text
    other = tmp_path / "curves"
    assert plot(tuned_run, "-o", other, "--format", "svg") == 0
    assert ET.parse(other).getroot().tag.endswith("svg")


def test_runs_that_differ_by_seed_are_one_mean_and_spread(seed_runs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert plot(*seed_runs) == 0
    assert "wrote the curves of 3 runs to curves.png" in capsys.readouterr().out
    img = image(tmp_path / "curves.png")
    assert img.shape == (800, 1200, 3)
    spread = near(img, FIRST, alpha=SPREAD_ALPHA, tol=4)
    assert spread.sum() > 1_500 and columns(spread) > 200  # the shaded min–max
    assert columns(near(img, FIRST)) > 200  # the mean
    # one drawing, so one colour: no second run's colour anywhere
    assert not near(img, RUN_COLOURS[1]).any()
    assert not near(img, RUN_COLOURS[2]).any()


def test_several_different_runs_are_overlaid_in_their_own_colours(seed_runs, tuned_run, tmp_path):
    output = tmp_path / "both.png"
    assert plot(seed_runs[0], tuned_run, "-o", output) == 0
    img = image(output)
    for colour in RUN_COLOURS[:2]:
        assert columns(near(img, colour)) > 200
    # no spread (a line's anti-aliased edge comes close in a few pixels): not seeds of one
    assert near(img, FIRST, alpha=SPREAD_ALPHA, tol=4).sum() < 500


def test_runs_of_other_algorithms_are_named_with_their_backend(seed_runs, tmp_path, monkeypatch):
    """Seed 1 of cem (numpy) against seed 1 of another algorithm and backend:
    the legend and the state strips tell them apart."""
    import matplotlib

    other = tmp_path / "other"
    shutil.copytree(seed_runs[0], other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "algo": "ppo", "backend": "jax"}))
    monkeypatch.setitem(matplotlib.rcParams, "svg.fonttype", "none")  # text stays text
    output = tmp_path / "both.svg"
    assert plot(seed_runs[0], other, "-o", output) == 0
    text = output.read_text()
    for name in ("CartPole-v1 cem (numpy) seed 1", "CartPole-v1 ppo (jax) seed 1"):
        assert text.count(name) == 2, name  # its legend entry and its state strip


def test_runs_on_the_environment_built_otherwise_are_not_seeds_of_one(
    seed_runs, tmp_path, monkeypatch
):
    """Seed 2 as trained, and seed 3 as if trained with --env-kwarg: two drawings,
    each named with its environment's arguments."""
    import matplotlib

    limited = tmp_path / "limited"
    shutil.copytree(seed_runs[2], limited)
    config = json.loads((limited / "config.json").read_text())
    config["env_kwargs"] = {"max_episode_steps": 100}
    (limited / "config.json").write_text(json.dumps(config))
    monkeypatch.setitem(matplotlib.rcParams, "svg.fonttype", "none")
    output = tmp_path / "both.svg"
    assert plot(seed_runs[1], limited, "-o", output) == 0
    text = output.read_text()
    assert text.count("CartPole-v1 (max_episode_steps=100) cem (numpy) seed 3") == 2
    assert text.count("CartPole-v1 cem (numpy) seed 2") == 2


def test_rollbacks_are_marked(tuned_run, tmp_path):
    """The CLI's loop never rolls back on its own; the count the loop writes is
    raised from one evaluation on, in a copy of a real run."""
    run_dir = Path(shutil.copytree(tuned_run, tmp_path / "rolled"))
    edited = lines(run_dir)
    for line in edited[len(edited) // 2 :]:
        line["metrics"]["rollbacks"] = 1.0
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in edited))
    output = tmp_path / "rolled.png"
    assert plot(run_dir, "-o", output) == 0
    img = image(output)
    rows, cols = plot_area(img)
    red = near(img[rows, cols], ROLLBACK_COLOUR, tol=10)
    # one dashed vertical line, over most of the panel's height
    assert red.any(axis=0).sum() <= 6
    assert red.any(axis=1).sum() > 0.4 * (rows.stop - rows.start)


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("missing", "does not exist"),
        ("empty", "has no evaluations yet"),
        ("no config", "is not an optix run directory: config.json is missing"),
        ("a file", "is not a run directory"),
    ],
)
def test_bad_runs_are_one_line_and_exit_2(tuned_run, tmp_path, capsys, case, says):
    run_dir = tmp_path / "run"
    if case == "empty":  # started, not evaluated yet
        run_dir.mkdir()
        shutil.copy(tuned_run / "config.json", run_dir)
        (run_dir / "metrics.jsonl").write_text("")
    elif case == "no config":
        run_dir.mkdir()
    elif case == "a file":
        run_dir.write_text("")
    assert plot(tuned_run, run_dir, "-o", tmp_path / "out.png") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("optix: error: ")
    assert str(run_dir) in captured.err
    assert says in captured.err
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-o", "x.pdf"], "writes png or svg, not .pdf"),
        (["-o", "x.png", "--format", "svg"], "names a .png file but --format is svg"),
        (["-o", "no/such/dir/x.png"], "does not exist"),
        (["--width", "0"], "--width must be between 100 and 16384, got 0"),
        (["--dpi", "1"], "--dpi must be between 10 and 1200, got 1"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(tuned_run, tmp_path, capsys, monkeypatch, args, says):
    monkeypatch.chdir(tmp_path)
    assert plot(tuned_run, *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err


def test_plot_help_imports_no_matplotlib():
    code = (
        "import sys\n"
        "from optix_core.cli import main\n"
        "try:\n"
        "    main(['plot', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('matplotlib', 'numpy', 'optix_callbacks.plot')\n"
        "print('IMPORTED', sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "--width PX" in result.stdout
    assert "IMPORTED []" in result.stdout
