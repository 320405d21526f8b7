"""What a request to the inference server(s) can fail with; every message names the URL."""


class InferenceError(Exception):
    """A server refused a request (HTTP 4xx) or answered something malformed; never retried."""


class InferenceUnreachable(InferenceError):
    """Every attempt of a request failed (connection error, timeout or HTTP 5xx) until the retry budget was spent."""
