"""The demo: a synthetic hospital database (``demo.hospital``) and ``baosong demo`` (``demo.run``).
Not part of the core: plugins add their own demo rows through the ``seed_demo_hospital`` hook."""
