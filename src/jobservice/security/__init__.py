"""jobservice.security."""
