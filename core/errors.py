"""Errors the core and plugins raise, each naming what is wrong."""


class BaosongError(Exception):
    """Base class; ``str(error)`` is a message fit for the admin (in Chinese where shown there)."""


class RejectUpload(BaosongError):
    """A plugin refuses to send an upload; the upload is recorded as rejected with this reason."""


class ConfigurationError(BaosongError):
    """A setting is missing or wrong (e.g. no key configured, an interface the documents do not define)."""


class UnknownReportType(BaosongError):
    pass


class RetryLater(BaosongError):
    """A plugin cannot send now but nothing is wrong with the data (e.g. the platform asked to sign in
    again): the attempt ends as a retryable failure, without a traceback."""


class AlreadyDelivered(BaosongError):
    """A plugin found, before sending, that the regulator already holds this upload (e.g. it queried
    after an unknown outcome): the attempt succeeds with ``result`` and nothing is sent."""

    def __init__(self, message: str, result: dict | None = None, code: str | None = None,
                 search_keys: list[str] | None = None):
        super().__init__(message)
        self.result = result or {}
        self.code = code
        self.search_keys = search_keys or []
