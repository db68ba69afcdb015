"""JSON-RPC error codes: the spec's, and the range our methods use for their own failures."""

from __future__ import annotations

from typing import Any, Final

from ..errors import ErrorAnswer

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603


class RpcFault(ErrorAnswer):
    """Raised by a method: answered as a JSON-RPC error with this code, message and data.

    Methods use codes from -32000 down (the spec's server-error range) and document them in
    their registry entry, so they appear in the OpenRPC document.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data
