"""Baosong plugin: shangrao_insurance."""
