"""Baosong plugin: twopath."""
