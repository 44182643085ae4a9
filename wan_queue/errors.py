"""Typed errors of the queue tool. Each message says what was found, what was expected and what to do."""

from __future__ import annotations


class QueueError(Exception):
    """Base class of every error wan_queue raises on purpose (the CLI prints it and exits 1)."""


class WorkflowError(QueueError):
    """The workflow cannot be turned into a prompt: unknown node types, bad widget counts, bad keys."""


class ParameterError(WorkflowError):
    """A --set/--sweep/--seeds value or a batch file row that addresses nothing or does not parse."""


class ServerDown(QueueError):
    """A server did not answer (refused, reset, timed out); the job goes back to the queue."""


class ServerError(QueueError):
    """A server answered a request with an HTTP error (other than a rejected prompt)."""


class PromptRejected(QueueError):
    """``/prompt`` answered 400: the message lists the server's ``node_errors`` per node and input."""

    def __init__(self, message: str, body: dict):
        super().__init__(message)
        self.body = body


class NoServerError(QueueError):
    """No server was reachable (or able to run the workflow) for longer than the give-up time."""
