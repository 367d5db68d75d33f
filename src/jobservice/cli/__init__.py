"""jobservice.cli."""
