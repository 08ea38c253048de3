"""The one exception the crypto module raises."""

from core.errors import BaosongError


class CryptoError(BaosongError):
    """A crypto step failed; ``str(error)`` names the step and the likely cause (Chinese + English)."""
