"""Request parameters of the VO services: case-insensitive names, repeated values, GET or POST.

DALI says parameter names are case-insensitive and values may repeat; POST bodies are
``application/x-www-form-urlencoded``. Bodies are read with a size limit.
"""

from __future__ import annotations

import math
from urllib.parse import parse_qsl

from romanflow.errors import RomanflowError


class RequestError(RomanflowError):
    """A request the service refuses (bad or missing parameter, too large): answered with a 4xx."""

    def __init__(self, message: str, status: int = 400):
        self.status = int(status)
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.args[0], self.status))


class NotFound(RequestError):
    def __init__(self, message: str):
        super().__init__(message, 404)

    def __reduce__(self):
        return (type(self), (self.args[0],))


class VOParams:
    """Upper-cased name -> list of values, from the query string and a form body."""

    def __init__(self, pairs):
        self.values: dict[str, list[str]] = {}
        for key, value in pairs:
            self.values.setdefault(str(key).upper(), []).append(str(value))

    def all(self, name: str) -> list[str]:
        return list(self.values.get(name.upper(), []))

    def get(self, name: str, default=None):
        v = self.values.get(name.upper())
        return v[-1] if v else default

    def __contains__(self, name: str) -> bool:
        return name.upper() in self.values

    def integer(self, name: str, default=None, *, minimum: int = 0, maximum: int | None = None):
        text = self.get(name)
        if text is None or text.strip() == "":
            return default
        try:
            value = int(text.strip())
        except ValueError:
            raise RequestError(f"{name}={text!r}: expected an integer") from None
        if value < minimum:
            raise RequestError(f"{name}={text!r}: must be at least {minimum}")
        if maximum is not None and value > maximum:
            value = maximum
        return value

    def number(self, name: str, default=None, *, required: bool = False):
        text = self.get(name)
        if text is None or text.strip() == "":
            if required:
                raise RequestError(f"{name} is required")
            return default
        try:
            value = float(text.strip())
        except ValueError:
            raise RequestError(f"{name}={text!r}: expected a number") from None
        if not math.isfinite(value):
            raise RequestError(f"{name}={text!r}: must be finite")
        return value


async def read_params(request, max_body_bytes: int) -> VOParams:
    """Parameters of a GET or POST (form-encoded) request."""
    pairs = list(request.query_params.multi_items())
    if request.method == "POST":
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await read_body(request, max_body_bytes)
        if body:
            if ctype in ("application/x-www-form-urlencoded", ""):
                try:
                    pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                                       max_num_fields=1000)
                except (UnicodeDecodeError, ValueError) as exc:
                    raise RequestError(f"the form body cannot be read: {exc}") from None
            else:
                raise RequestError(f"content type {ctype!r} is not accepted: send "
                                   "application/x-www-form-urlencoded parameters", 415)
    return VOParams(pairs)


async def read_body(request, max_body_bytes: int) -> bytes:
    """The request body, refused with 413 past ``max_body_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_body_bytes:
                raise RequestError(f"the request body is larger than {max_body_bytes} bytes", 413)
        except ValueError:
            raise RequestError("Content-Length is not a number") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise RequestError(f"the request body is larger than {max_body_bytes} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_interval(text: str, name: str) -> tuple[float, float]:
    """A DALI interval ``"lo hi"`` (either may be ``-Inf``/``+Inf``; one number means lo = hi)."""
    parts = str(text).split()
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise RequestError(f"{name}={text!r}: expected 'low high' numbers") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or any(math.isnan(v) for v in values) or values[0] > values[1]:
        raise RequestError(f"{name}={text!r}: expected 'low high' with low <= high")
    return values[0], values[1]
