"""Errors that the API reports to the client as 4xx responses."""


class ApiError(Exception):
    """A request that cannot be served.

    ``message`` is the text of the legacy (``/api/``, ``/api/v1/``) body;
    ``v2_message`` the text of the ``{"error": ...}`` body of ``/api/v2/``
    where GraceDB words it differently.
    """

    def __init__(self, status, message, v2_message=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.v2_message = v2_message or message


def bad_request(message, v2_message=None):
    """A 400 error."""
    return ApiError(400, message, v2_message)


def not_found(message='Not found.'):
    """A 404 error."""
    return ApiError(404, message)
