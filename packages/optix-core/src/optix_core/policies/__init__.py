"""The framework-free half of the policy layer every backend shares.

``distributions``: what a network's output means for each action space,
with sampling and the mode in numpy (backends add ``log_prob`` and
``entropy`` in their framework); ``observations``: batches of observations,
plain or Dict, as numpy arrays and records.
"""
