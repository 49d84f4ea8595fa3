"""One base exception: the CLI turns any of these into one stderr line and exit 1."""


class DvpError(Exception):
    """A failure the user can act on; its message is the whole explanation."""


class InputError(DvpError):
    """The input video cannot be used (missing, not a video, corrupt, empty)."""


class FilterSpecError(DvpError):
    """Unknown filter name or bad filter parameter."""


class BrokerError(DvpError):
    """Kafka is unreachable, or refused a record."""


class MalformedRecord(DvpError):
    """A record on a topic is not a valid dvp message."""


class JobError(DvpError):
    """A job's records cannot make its video (a frame of another size, too many faces):
    that job fails with this reason, the others go on."""
