"""TensorFlow and PyTorch in one process: the import guard optix-tf and optix-torch install.

Importing this module, and installing the guard, imports no framework and
costs nothing measurable: the guard is a finder at the front of
``sys.meta_path`` that acts only when one of these is about to be imported.

``triton``, which torch imports when it builds its first optimizer or
compiles a model. Triton's ``libtriton.so`` links its own LLVM with default
symbol visibility, and TensorFlow puts its LLVM's symbols in the process's
global scope. A libtriton loaded after TensorFlow binds its LLVM references
to TensorFlow's copy, registers its command-line options a second time in
that copy's registry, and LLVM aborts the process (``LLVM ERROR:
inconsistency in registered CommandLine options``). Loaded before TensorFlow
it binds to itself, and both live. When another LLVM is global already, the
guard loads libtriton with ``RTLD_DEEPBIND`` (its own symbols first), and
Python's import of triton then finds it loaded.

An ``optix_tf`` module other than ``optix_tf.plugin`` (the ones that import
Keras and TensorFlow), the first time:

1. Keras 3 must run on TensorFlow: ``KERAS_BACKEND`` naming another backend,
   or keras imported already on another, is an ImportError naming the
   variable; unset, it is set to ``tensorflow`` before keras first loads.
2. If TensorFlow is not imported yet and triton is installed, libtriton is
   loaded first (plainly, the order in which the two LLVMs never meet), so
   torch's later import of triton needs no ``RTLD_DEEPBIND``.
3. Unless ``set_verbose(True)`` was called (``optix ... --verbose``) or the
   user set ``TF_CPP_MIN_LOG_LEVEL``: ``TF_CPP_MIN_LOG_LEVEL=3``, and the log
   lines TensorFlow's libraries print while they load (absl's pre-init
   lines, written before TensorFlow reads that variable) are dropped from
   stderr; anything else written to stderr meanwhile is written back after.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

# The collision is one of ELF symbol binding: Linux only (triton's wheels are too).
LINUX = sys.platform.startswith("linux")
TF_PACKAGE = "optix_tf"
# optix-tf's modules that import no framework: the plugin registry imports them
# for `optix list`, which must stay cheap.
FRAMEWORK_FREE = frozenset({"optix_tf", "optix_tf.plugin"})
# llvm::cl::Option::addArgument(): defined by every LLVM, and by libtriton.
LLVM_SYMBOL = "_ZN4llvm2cl6Option11addArgumentEv"
# A TensorFlow (absl) log line: "I0000 00:00:1796245355.014617   29532 port.cc:153] ..."
TF_LOG_LINE = r"[IWEF]\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] "
ABSL_PREINIT = "WARNING: All log messages before absl::InitializeLog() is called"

_verbose = False
_tf_prepared = False
_quiet = False
_capturing = False
_triton_loaded = False


def set_verbose(verbose: bool) -> None:
    """Leave TensorFlow's own logs alone (``True``), or quiet them (the default)."""
    global _verbose
    _verbose = verbose


def install() -> None:
    """Put the guard at the front of ``sys.meta_path``, once."""
    if not any(isinstance(finder, _Guard) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Guard())


class _Guard:
    """A meta path finder that prepares imports, then lets the other finders find them."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname == "triton":
            if LINUX and not _triton_loaded and _llvm_is_global():
                _load_libtriton(deepbind=True)
            return None
        if fullname in FRAMEWORK_FREE or not fullname.startswith(f"{TF_PACKAGE}."):
            return None
        if not _tf_prepared:
            _prepare_tensorflow()
        if not _quiet or _capturing or "tensorflow" in sys.modules:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader)
        return spec


def _prepare_tensorflow() -> None:
    """Steps 1 to 3 of the module docstring, before optix-tf's first module loads."""
    global _tf_prepared, _quiet
    check_keras_backend()
    _tf_prepared = True
    if "tensorflow" in sys.modules:
        return
    if LINUX and not _triton_loaded and "triton" not in sys.modules:
        _load_libtriton(deepbind=False)
    _quiet = not _verbose and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    if _quiet:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"


def check_keras_backend() -> None:
    """Raise ImportError unless Keras is, or will be, on the TensorFlow backend."""
    requested = os.environ.get("KERAS_BACKEND")
    keras = sys.modules.get("keras")
    if keras is None:
        if requested is None:
            os.environ["KERAS_BACKEND"] = "tensorflow"
        elif requested != "tensorflow":
            raise ImportError(
                f"optix-tf runs Keras 3 on TensorFlow, but KERAS_BACKEND={requested!r}: "
                "set KERAS_BACKEND=tensorflow, or unset it"
            )
        return
    backend = getattr(getattr(keras, "backend", None), "backend", None)
    actual = backend() if callable(backend) else None
    if actual not in (None, "tensorflow"):
        source = "~/.keras/keras.json" if requested is None else f"KERAS_BACKEND={requested!r}"
        raise ImportError(
            f"optix-tf runs Keras 3 on TensorFlow, but keras was already imported on the "
            f"{actual!r} backend ({source}): set KERAS_BACKEND=tensorflow before anything "
            "imports keras"
        )


def _llvm_is_global() -> bool:
    """Whether an LLVM's symbols are in the process's global scope (TensorFlow's, once loaded)."""
    import ctypes

    try:
        return hasattr(ctypes.CDLL(None), LLVM_SYMBOL)
    except OSError:
        return False


def _load_libtriton(deepbind: bool) -> None:
    """dlopen triton's libtriton now, if triton is installed; Python's import reuses it."""
    global _triton_loaded
    import ctypes
    from importlib.machinery import PathFinder
    from pathlib import Path

    spec = PathFinder.find_spec("triton")
    if spec is None or spec.origin is None:
        return
    libraries = sorted((Path(spec.origin).parent / "_C").glob("libtriton*.so"))
    mode = getattr(os, "RTLD_NOW", 2)
    if deepbind:
        if not hasattr(os, "RTLD_DEEPBIND"):
            return
        mode |= os.RTLD_DEEPBIND
    if not libraries:
        return
    try:
        ctypes.CDLL(str(libraries[0]), mode=mode)
    except OSError:  # a broken triton: its own import will say so, where torch asks for it
        return
    _triton_loaded = True


class _QuietLoader:
    """Runs a module with file descriptor 2 captured, writing back all but TensorFlow's log lines."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        global _capturing
        _capturing = True
        try:
            with quiet_tensorflow_logs():
                self.loader.exec_module(module)
        finally:
            _capturing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


@contextlib.contextmanager
def quiet_tensorflow_logs() -> Iterator[None]:
    """Capture fd 2 in a temporary file; on exit, write back what is not a TensorFlow log line."""
    import tempfile

    with tempfile.TemporaryFile() as captured:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no stderr to capture
            yield
            return
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = drop_tensorflow_logs(captured.read().decode(errors="replace"))
            if kept:
                os.write(2, kept.encode())


def drop_tensorflow_logs(text: str) -> str:
    """``text`` without TensorFlow's log lines and absl's pre-init warning."""
    import re

    log_line = re.compile(TF_LOG_LINE)
    return "".join(
        line
        for line in text.splitlines(keepends=True)
        if not (log_line.match(line) or line.startswith(ABSL_PREINIT))
    )
