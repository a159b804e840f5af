"""The policy layer every optix-tf algorithm shares, mirroring optix-torch's.

``extractors``: observations → features (flat, NatureCNN/SmallCNN, one-hot,
Dict); ``distributions``: optix-core's action distributions with
``log_prob`` and ``entropy`` in TensorFlow; ``networks``: the default
actor-critic chosen from the spaces, and the check that a user's Keras
networks fit; ``sde``: gSDE's actor-critic (PPO's and A2C's ``use_sde``);
``observations``: batches as tensors.
"""
