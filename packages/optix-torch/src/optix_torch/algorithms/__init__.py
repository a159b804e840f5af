"""One file per algorithm, each over the policy layer (``optix_torch.policies``):
``ppo``, ``a2c``, ``recurrent_ppo``, ``dqn``, ``rainbow``, ``sac``, ``td3``.

What a family shares sits beside them: ``on_policy`` (bootstrapping values,
GAE, the default agent), ``q_learning`` (DQN and Rainbow: target network,
the network check), ``off_policy`` (SAC and TD3: twin critics, the clipped
double-Q target), and ``replay``, what all four off-policy algorithms share
(the replay memory and Stable-Baselines3's update schedule).
"""
