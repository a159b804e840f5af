"""optix-tf's accelerators: hand-optimized paths used where they apply.

Each is equal to the plain Keras/TensorFlow path it replaces (tests/test_accel.py)
and falls back to that path where it does not apply or where the framework
internals it needs are missing. ``adam``: Adam's step fused per variable.
"""
