"""Session fixtures for real aws servers (filled in by the aws backends)."""
