"""Each algorithm's defaults, valid ranges, tuning ranges and rollout shape.

Kept apart from the algorithms so that registering them imports no torch.
"""
