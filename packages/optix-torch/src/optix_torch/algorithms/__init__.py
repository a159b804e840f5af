"""One file per algorithm, each over the policy layer (``optix_torch.policies``):
``ppo``, ``a2c``, ``recurrent_ppo``, ``dqn``, ``rainbow``, ``sac``, ``td3``.

What a family shares sits beside them, in torch: ``on_policy`` (the forward
pass behind optix-core's ``optix_core.on_policy``, the default agent),
``q_learning`` (DQN and Rainbow: target network, the network check),
``off_policy`` (SAC and TD3: twin critics, the clipped double-Q target), and
``replay`` (minibatches of optix-core's ``optix_core.off_policy`` replay and
schedule as tensors on the device).
"""
