"""jobservice.api."""
