"""Secrets out of everything Parrot writes: manifests, failures files, logs, error messages.

One mechanism, used everywhere a value could carry a credential:

- :func:`redact` copies a JSON-like value with every secret-named key's value (``api_key``,
  ``Authorization``, ``hf_token``...) replaced by ``<redacted>``, credentials taken out of URLs,
  and every string passed through :func:`redact_text`.
- :func:`redact_text` scrubs free text (a server's error body that echoes the request's
  headers): the values of the API keys in use (:func:`register_secret`; the backends register the
  key they read) and of secret-named environment variables, ``Bearer <token>``, ``sk-...`` and
  ``hf_...`` keys, ``name: value`` / ``name=value`` pairs whose name is a secret's, and
  ``user:password@`` in URLs.
- :func:`scrub` replaces only the exact secret values: cheap enough for every line of every
  output file, and never touches ordinary text.

>>> redact_text("HTTP 500: echo {'authorization': 'Bearer sk-abc123def456ghi'}")
"HTTP 500: echo {'authorization': '<redacted>'}"
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "<redacted>"

_SECRET_KEY = re.compile(
    r"(^|[_-])(api[_-]?key|secret|password|passwd|token|access[_-]token|authorization|"
    r"auth|bearer|credentials?)$",
    re.I,
)
# Tokenizer settings that end in "_token" but name a vocabulary entry, not a credential.
_VOCAB_TOKENS = {f"{name}_token" for name in ("pad", "eos", "bos", "unk", "sep", "cls", "mask")}
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)

# Secret values shorter than this are not scrubbed from text (``EMPTY``, ``1``: not credentials,
# and replacing them would mangle ordinary words).
MIN_SECRET_CHARS = 8

# Free-text patterns, applied in order.
_NAMED_VALUE = re.compile(  # api_key=..., "x-api-key": "...", Authorization: Basic ...
    r"(?<![A-Za-z0-9_-])(?P<name>[A-Za-z0-9_-]*?(?:api[_-]?key|secret|password|passwd|token|authorization|"
    r"auth|bearer|credentials?))(?P<sep>[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<value>(?:Bearer|Basic|Token)\s+(?:<redacted>|[^\s\"'&,;:}<>]+)|[^\s\"'&,;:}<>]+)",
    re.I,
)
_BEARER = re.compile(r"\b(Bearer|Basic)\s+(?!<redacted>)[A-Za-z0-9._~+/=-]{6,}", re.I)
_KEY_SHAPES = re.compile(r"(?<![A-Za-z0-9])(?:sk|hf)[-_][A-Za-z0-9_-]{8,}")
_URL_IN_TEXT = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+", re.I)

_registered: set[str] = set()
_generation = 0  # bumped when a new secret is registered: a Scrubber then looks them up again


def is_secret_key(key: str) -> bool:
    """``api_key``, ``x-api-key``, ``hf_token``, ``password`` are secrets; ``api_key_env``,
    ``max_tokens``, ``pad_token`` are not."""
    lower = key.lower()
    return bool(_SECRET_KEY.search(key)) and not lower.endswith(("_tokens", "_env")) and lower not in _VOCAB_TOKENS


def register_secret(value: str | None) -> None:
    """Remember ``value`` (an API key a backend uses) so that it is scrubbed wherever it appears."""
    global _generation
    if value and len(value) >= MIN_SECRET_CHARS and value not in _registered:
        _registered.add(value)
        _generation += 1


def known_secrets() -> tuple[str, ...]:
    """The secret values to scrub: those registered, and those of environment variables whose
    names are a secret's (``OPENAI_API_KEY``, ``HF_TOKEN``); longest first."""
    values = set(_registered)
    values.update(v for k, v in os.environ.items() if len(v) >= MIN_SECRET_CHARS and is_secret_key(k))
    return tuple(sorted(values, key=len, reverse=True))


def scrub(text: str, secrets: tuple[str, ...] | None = None) -> str:
    """``text`` with every exact secret value (:func:`known_secrets`) replaced by ``<redacted>``."""
    for secret in known_secrets() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class Scrubber:
    """:func:`scrub` for a stream of lines (a writer's): the secrets are looked up once, and again
    only when a new one is registered."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()
        self._generation = -1

    def __call__(self, text: str) -> str:
        if self._generation != _generation:
            self._secrets, self._generation = known_secrets(), _generation
        return scrub(text, self._secrets) if self._secrets else text


def redact_url(url: str) -> str:
    """``url`` without a ``user:password@`` part and with secret-named query values redacted."""
    parts = urlsplit(url)
    pairs = [pair.partition("=") for pair in parts.query.split("&")] if parts.query else []
    query = "&".join(k + (f"={REDACTED if v and is_secret_key(k) else v}" if sep else "") for k, sep, v in pairs)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, query, parts.fragment))


def _named_value(m: re.Match) -> str:
    if not is_secret_key(m.group("name")) or m.group("value") == REDACTED:
        return m.group(0)
    return f"{m.group('name')}{m.group('sep')}{REDACTED}"


def _url_in_text(m: re.Match) -> str:
    try:
        return redact_url(m.group(0))
    except ValueError:  # not a URL after all ("http://[oops")
        return m.group(0)


def redact_text(text: str, secrets: tuple[str, ...] | None = None) -> str:
    """Free text with the secrets in it replaced by ``<redacted>`` (see the module docstring)."""
    text = scrub(text, secrets)
    text = _URL_IN_TEXT.sub(_url_in_text, text)
    text = _NAMED_VALUE.sub(_named_value, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _KEY_SHAPES.sub(REDACTED, text)


def redact(obj: Any, secrets: tuple[str, ...] | None = None) -> Any:
    """A copy of ``obj`` with every secret-named key's value replaced, credentials taken out
    of URLs (``https://user:pass@host/?api-key=...``) and secrets scrubbed from all text."""
    if secrets is None:
        secrets = known_secrets()
    if isinstance(obj, dict):
        return {
            k: (REDACTED if is_secret_key(str(k)) and v not in (None, "") else redact(v, secrets))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [redact(v, secrets) for v in obj]
    if isinstance(obj, str):
        return redact_text(redact_url(obj) if _URL.match(obj) else obj, secrets)
    return obj
