"""Tests of the Hadoop backend; the ``minicluster`` fixture is in tests/conftest.py."""
