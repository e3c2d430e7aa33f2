"""hopper bench."""
