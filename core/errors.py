"""The project's one root exception type and its named children.

Messages say what was wrong and what to do about it; third-party errors are
wrapped with ``raise ... from err`` so the cause is kept.
"""


class PlaygroundError(Exception):
    """Root of every error the project raises on purpose."""


class PortInUseError(PlaygroundError):
    """A port the stack needs is already taken by another process."""

    def __init__(self, port: int, setting: str, component: str) -> None:
        self.port = port
        self.setting = setting
        super().__init__(
            f"port {port} on 127.0.0.1 is already in use, so {component} cannot start. "
            f"Stop whatever holds it, or choose another port with {setting}=<port>."
        )


class KafkaFetchError(PlaygroundError):
    """Kafka's Maven artifacts could not be fetched."""


class StackError(PlaygroundError):
    """A stack component failed to start, stop or become healthy."""
