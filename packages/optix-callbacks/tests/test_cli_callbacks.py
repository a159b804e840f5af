"""The callbacks through ``optix train``: offered by name, checked before a run
starts, recorded so that ``--resume`` watches the run as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import read_scalars

from optix_core.cli import main
from optix_core.cli.callbacks import check
from optix_core.cli.errors import UsageError
from optix_core.specs import CallbackSpec

TRAIN = ["train", "CartPole-v1", "--algo", "cem", "--seed", "0"]


def only_run(root: Path) -> Path:
    (run_dir,) = [p for p in root.iterdir() if p.is_dir()]
    return run_dir


def logged_steps(run_dir: Path) -> list[int]:
    return [
        json.loads(x)["env_steps"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


def test_train_with_the_dashboard_and_tensorboard(tmp_path, capsys):
    assert (
        main(
            [
                *TRAIN,
                "--max-windows",
                "6",
                "--run-dir",
                str(tmp_path),
                "--dashboard",
                "--tensorboard",
            ]
        )
        == 0
    )
    run_dir = only_run(tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["callbacks"] == {"dashboard": None, "tensorboard": None}
    scalars = read_scalars(run_dir / "tensorboard")  # the default: inside the run
    assert [step for step, _ in scalars["score/raw"]] == logged_steps(run_dir)
    assert "Final eval" in capsys.readouterr().out


def test_a_resumed_run_is_watched_as_before(tmp_path):
    assert main([*TRAIN, "--max-windows", "3", "--run-dir", str(tmp_path), "--tensorboard"]) == 0
    run_dir = only_run(tmp_path)
    assert main(["train", "--resume", str(run_dir), "--max-windows", "6", "--dashboard"]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["callbacks"] == {"tensorboard": None, "dashboard": None}
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2
    steps = [step for step, _ in read_scalars(run_dir / "tensorboard")["score/raw"]]
    assert steps == logged_steps(run_dir)  # both parts, in order


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--callback", "nope"], "no callback named 'nope' is installed; installed: dashboard"),
        (["--callback", "dashboard=yes"], "callback dashboard takes no value"),
        (["--callback", "wandb"], "callback wandb needs a PROJECT"),
    ],
)
def test_bad_callbacks_are_one_line_before_any_run_starts(tmp_path, capsys, flags, message):
    assert main([*TRAIN, "--run-dir", str(tmp_path / "runs"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_callback_that_cannot_be_built_leaves_no_run_behind(tmp_path, capsys):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    runs = tmp_path / "runs"
    assert main([*TRAIN, "--run-dir", str(runs), "--tensorboard", str(not_a_directory)]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert not any(runs.iterdir())


def test_a_missing_library_names_the_extra_to_install():
    spec = CallbackSpec(
        name="mlflow", factory="x:Y", requires=("no_such_module_here",), extra="optix-mlflow[all]"
    )
    with pytest.raises(
        UsageError,
        match=r"needs no_such_module_here, not installed: pip install 'optix-mlflow\[all\]'",
    ):
        check({"mlflow": spec}, "mlflow", None)


def test_optix_plugins_lists_the_callbacks(capsys):
    assert main(["plugins"]) == 0
    (plugin,) = [p for p in json.loads(capsys.readouterr().out) if p["name"] == "optix-callbacks"]
    assert {c["name"] for c in plugin["callbacks"]} == {"dashboard", "tensorboard", "wandb"}
