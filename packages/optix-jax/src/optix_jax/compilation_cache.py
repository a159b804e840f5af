"""XLA's persistent compilation cache, on by default for optix-jax.

On the CPU, XLA takes seconds to compile a jitted PPO update or a compiled
window (about 4 s each on a 2-core machine), often longer than the training
that follows on a small task. JAX can keep compiled programs on disk and
reuse them in the next process; optix-jax turns that on unless the user
already chose a cache directory (``JAX_COMPILATION_CACHE_DIR`` or
``jax.config``) or opted out with ``OPTIX_JAX_CACHE=0``. Only programs that
took at least a second to compile are stored (JAX's own threshold), so the
cache holds the few big ones. The directory is
``$XDG_CACHE_HOME/optix/jax`` (``~/.cache/optix/jax``).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax


def cache_directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "optix" / "jax"


def enable() -> None:
    """Point JAX's persistent compilation cache at optix's directory, unless the user
    set one or ``OPTIX_JAX_CACHE=0``."""
    if os.environ.get("OPTIX_JAX_CACHE", "1") == "0" or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", str(cache_directory()))
