"""Unit tests: fakes and local files only. A package, so that a module here may
share its name with one in tests/integration."""
