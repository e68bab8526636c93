"""Test support: the process stack under test and the OpenAPI contract checker."""
