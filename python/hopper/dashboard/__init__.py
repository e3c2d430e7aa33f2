"""Static files of the dashboard page (served by hopper.server.dashboard)."""
