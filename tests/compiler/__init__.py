"""Tests of the compiler driver: artifacts, model specs, the CLI."""
