"""Baosong core: the plugin contract, the upload ledger and pipeline, queues and schedules."""
