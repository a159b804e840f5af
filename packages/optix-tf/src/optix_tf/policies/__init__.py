"""The policy layer every optix-tf algorithm shares, mirroring optix-torch's.

``extractors``: observations → features (flat, NatureCNN/SmallCNN, one-hot,
Dict); ``distributions``: optix-core's action distributions with
``log_prob`` and ``entropy`` in TensorFlow; ``networks``: the default
actor-critic chosen from the spaces, and the check that a user's Keras
networks fit; ``observations``: batches as tensors.
"""
