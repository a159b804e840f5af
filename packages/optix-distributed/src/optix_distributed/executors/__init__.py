"""Where actors run: local processes (``local``) or Ray actors (``ray``)."""
