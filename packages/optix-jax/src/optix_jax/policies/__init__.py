"""The policy layer every optix-jax algorithm shares, mirroring optix-torch's and optix-tf's.

``extractors``: observations → features (flat, NatureCNN/SmallCNN, one-hot,
Dict) as Flax NNX modules; ``distributions``: optix-core's action
distributions with ``log_prob``, ``entropy`` and a pure ``sample`` in JAX;
``networks``: the default actor-critic chosen from the spaces, and the check
that a user's networks fit; ``sde``: gSDE's actor-critic (PPO's and A2C's
``use_sde``); ``observations``: batches as JAX arrays.
"""
