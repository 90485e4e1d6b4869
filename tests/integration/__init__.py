"""Integration tests: the real model and real servers. A package, so that a module
here may share its name with one in tests/unit."""
