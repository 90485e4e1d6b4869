"""Session fixtures for real chroma servers (filled in by the chroma backends)."""
