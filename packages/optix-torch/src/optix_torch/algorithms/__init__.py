"""One file per algorithm, each over the policy layer (``optix_torch.policies``)."""
