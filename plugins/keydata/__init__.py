"""Baosong plugin: keydata."""
