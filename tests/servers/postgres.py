"""Session fixtures for real postgres servers (filled in by the postgres backends)."""
