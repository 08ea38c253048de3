"""Baosong plugin: ihs_supervision."""
