"""Errors the core and plugins raise, each naming what is wrong."""


class BaosongError(Exception):
    """Base class; ``str(error)`` is a message fit for the admin (in Chinese where shown there)."""


class RejectUpload(BaosongError):
    """A plugin refuses to send an upload; the upload is recorded as rejected with this reason."""


class ConfigurationError(BaosongError):
    """A setting is missing or wrong (e.g. no key configured, an interface the documents do not define)."""


class UnknownReportType(BaosongError):
    pass
