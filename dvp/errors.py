"""One base exception: the CLI turns any of these into one stderr line and exit 1."""


class DvpError(Exception):
    """A failure the user can act on; its message is the whole explanation."""


class InputError(DvpError):
    """The input video cannot be used (missing, not a video, corrupt, empty)."""


class FilterSpecError(DvpError):
    """Unknown filter name or bad filter parameter."""


class BrokerError(DvpError):
    """Kafka is unreachable, or refused a record or a request. Where Kafka said why:
    its error `code`, and what it allows: trying again (`retriable`), nothing more
    from this client (`fatal`), or aborting the transaction (`abortable`; also set
    for records refused, none of whose transaction may count)."""

    def __init__(self, message: str, code: int | None = None, retriable: bool = False, fatal: bool = False,
                 abortable: bool = False):
        super().__init__(message)
        self.code = code
        self.retriable = retriable
        self.fatal = fatal
        self.abortable = abortable


class MalformedRecord(DvpError):
    """A record on a topic is not a valid dvp message."""


class JobError(DvpError):
    """A job's records cannot make its video (a frame of another size, too many faces):
    that job fails with this reason, the others go on."""
