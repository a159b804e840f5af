"""optix_core.frameworks without a framework: the log filter, the stderr capture, the guard.

The guard with real TensorFlow and torch is tested in
integration-tests/tests/test_two_frameworks.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from optix_core import frameworks

TF_STARTUP = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796245355.014617   29532 port.cc:153] oneDNN custom operations are on.\n"
    "I0000 00:00:1796245355.015153   29532 cudart_stub.cc:31] Could not find cuda drivers\n"
    "E0000 00:00:1796245362.935411   29532 cuda_platform.cc:52] failed call to cuInit\n"
    "W1202 21:03:05.123456    4711 some_file.cc:7] a warning\n"
)


def test_drop_tensorflow_logs_keeps_everything_else() -> None:
    others = "/x/y.py:3: DeprecationWarning: old\n  warnings.warn('old')\nI0000 is not a log line\n"
    assert frameworks.drop_tensorflow_logs(TF_STARTUP + others) == others
    assert frameworks.drop_tensorflow_logs(TF_STARTUP) == ""


def test_quiet_tensorflow_logs_captures_file_descriptor_2() -> None:
    """What a library writes straight to fd 2 is filtered; the rest comes back, in order."""
    code = f"""
        import os, sys
        from optix_core.frameworks import quiet_tensorflow_logs

        with quiet_tensorflow_logs():
            os.write(2, {TF_STARTUP!r}.encode())
            print("python says hello", file=sys.stderr)
            os.write(2, b"a C library line\\n")
        print("after", file=sys.stderr)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    )
    assert result.stderr == "python says hello\na C library line\nafter\n"


def test_quiet_tensorflow_logs_writes_back_when_the_body_raises() -> None:
    code = """
        import os
        from optix_core.frameworks import quiet_tensorflow_logs

        with quiet_tensorflow_logs():
            os.write(2, b"I0000 00:00:1.5   1 port.cc:1] noise\\nwhy it failed\\n")
            raise SystemExit(3)
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True)
    assert (result.returncode, result.stderr) == (3, b"why it failed\n")


def test_install_puts_one_guard_first_and_costs_no_import() -> None:
    code = """
        import sys
        from optix_core import frameworks

        before = set(sys.modules)
        frameworks.install()
        frameworks.install()
        guards = [f for f in sys.meta_path if type(f).__name__ == "_Guard"]
        assert len(guards) == 1 and sys.meta_path[0] is guards[0], sys.meta_path
        assert set(sys.modules) == before, set(sys.modules) - before
        import json, optix_core.registry  # other imports pass through untouched
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True)


@pytest.mark.skipif("keras" in sys.modules, reason="keras already imported in this process")
def test_keras_backend_defaults_to_tensorflow_and_refuses_another(monkeypatch) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "unset below")
    monkeypatch.delenv("KERAS_BACKEND")
    frameworks.check_keras_backend()
    assert os.environ["KERAS_BACKEND"] == "tensorflow"
    frameworks.check_keras_backend()  # an explicit tensorflow is fine
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(ImportError, match="KERAS_BACKEND='jax'.*set KERAS_BACKEND=tensorflow"):
        frameworks.check_keras_backend()
