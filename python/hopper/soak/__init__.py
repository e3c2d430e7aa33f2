"""hopper soak."""
