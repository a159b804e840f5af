"""The hooks a plugin implements. Each receives a ``register`` callable."""

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("optix")
hookimpl = HookimplMarker("optix")


@hookspec
def optix_register_agents(register):
    """Register agents: call ``register(AgentSpec(...))`` once per algorithm and backend."""


@hookspec
def optix_register_evaluators(register):
    """Register evaluators: call ``register(EvaluatorSpec(...))`` for each."""


@hookspec
def optix_register_callbacks(register):
    """Register loop callbacks: call ``register(CallbackSpec(...))`` for each."""


@hookspec
def optix_register_backends(register):
    """Register a framework backend: call ``register(BackendSpec(...))``."""


@hookspec
def optix_register_environments(register):
    """Register an environment family: call ``register(EnvironmentSpec(...))``, whose
    ids ``prefix:Name`` then work wherever an environment id is taken."""
