"""optix-callbacks' plugin: registers its callbacks by name for ``optix train``.
Imports none of their libraries."""

from optix_core import CallbackSpec, hookimpl


@hookimpl
def optix_register_callbacks(register):
    register(
        CallbackSpec(
            name="dashboard",
            factory="optix_callbacks.dashboard:RichDashboardCallback",
            summary="live terminal panel: score sparkline, loop state, hyperparameters, progress",
            flag=True,
            requires=("rich",),
            extra="optix-callbacks",
        )
    )
    register(
        CallbackSpec(
            name="tensorboard",
            factory="optix_callbacks.tensorboard:TensorBoardCallback",
            summary="TensorBoard scalars against env steps (default: RUN/tensorboard)",
            flag=True,
            option="log_dir",
            option_required=False,
            requires=("tensorboard",),
            extra="optix-callbacks[tensorboard]",
        )
    )
    register(
        CallbackSpec(
            name="wandb",
            factory="optix_callbacks.wandb:WandbCallback",
            summary="Weights & Biases: config, scores, hyperparameters, checkpoints, report",
            flag=True,
            option="project",
            requires=("wandb",),
            extra="optix-callbacks[wandb]",
        )
    )
