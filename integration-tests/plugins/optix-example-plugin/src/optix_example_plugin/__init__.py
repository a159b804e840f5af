"""optix-example-plugin."""
