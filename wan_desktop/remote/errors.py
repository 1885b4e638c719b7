"""Why a server cannot be used, each with what to do: what the app shows instead of a traceback."""

from __future__ import annotations

from wan_desktop.engine.errors import EngineError


class RemoteError(EngineError):
    """The remote engine cannot do this now; ``what_to_do`` says how to fix it."""

    def __init__(self, problem: str, what_to_do: str) -> None:
        super().__init__(f"{problem}: {what_to_do}")
        self.problem = problem
        self.what_to_do = what_to_do


class BadAddressError(RemoteError, ValueError):
    def __init__(self, address: str) -> None:
        super().__init__(
            f"{address!r} is not a server address",
            "write it as http://host:port (or https://host behind a TLS proxy)",
        )


class ServerUnreachableError(RemoteError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot reach the server at {url} ({reason})",
            "check the address and port, that `wan serve` runs there, and that no firewall "
            "blocks it",
        )


class WrongTokenError(RemoteError):
    def __init__(self, url: str) -> None:
        super().__init__(
            f"the server at {url} refused the access token",
            "give the token that `wan serve` printed (or its token file): --token, "
            "WAN_API_TOKEN, or Settings → Engine",
        )


class NotWanServeError(RemoteError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"{url} answers, but it is not a Wan Desktop server ({reason})",
            "check the address and port: they must be those of `wan serve`",
        )


class IncompatibleServerError(RemoteError):
    def __init__(self, url: str, server_version: str, wire: object, ours: int) -> None:
        super().__init__(
            f"the server at {url} (Wan Desktop {server_version}) speaks engine wire version "
            f"{wire}, this app speaks {ours}",
            "install the same version of Wan Desktop on both machines",
        )


class RemoteCommandError(EngineError):
    """The server refused a command (a job in the wrong state, a conflict…): its own words."""

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
