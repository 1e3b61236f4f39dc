"""Will Envoy accept this regular expression? A small RE2 parser that answers before Envoy does.

Envoy compiles `safe_regex` with RE2 and NACKs the whole RouteConfiguration when one regex does
not compile or its RE2 *program size* exceeds `re2.max_program_size.error_level` (default 100).
Python's `re` is no oracle: it accepts lookarounds, backreferences, `\\Z`, atomic groups and other
constructs RE2 rejects, and knows nothing of program size. So translation checks every regex here
and turns a rejection into a route status condition; an invalid regex never reaches Envoy.

The parser follows RE2's syntax (github.com/google/re2/wiki/Syntax) and is deliberately
conservative: where RE2 behaviour is obscure (`\\x{...}`, non-ASCII class ranges) it rejects.
Program size is an upper-bound estimate calibrated against Envoy 1.40's reported sizes (which
behave as if the pattern were compiled byte-wise): base 4, one per literal byte, one per range of
a character class, +2 per capture group, +1 per `?`, +2 per unbounded repetition, and
`x{n,m}` = n*x + (m-n)*(x+1).
The estimate never undercounts on the calibration set, so a regex accepted here is accepted by
Envoy; a few near the limit may be refused here that Envoy would take.
"""

from __future__ import annotations

import attrs

__all__ = ["MAX_PROGRAM_SIZE", "RegexVerdict", "check_regex", "quote_regex"]

MAX_PROGRAM_SIZE = 100
"""Envoy's default `re2.max_program_size.error_level`."""

_BASE_COST = 4
_MAX_REPEAT = 1000
_UNKNOWN_CLASS_COST = 10
_WORD = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")
_DIGIT = frozenset(range(0x30, 0x3A))
_SPACE = frozenset((0x09, 0x0A, 0x0C, 0x0D, 0x20))
_ALL = frozenset(range(256))
_POSIX = {
    "alnum": frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    "alpha": frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    "ascii": frozenset(range(0x80)),
    "blank": frozenset(b" \t"),
    "cntrl": frozenset((*range(0x20), 0x7F)),
    "digit": _DIGIT,
    "graph": frozenset(range(0x21, 0x7F)),
    "lower": frozenset(range(0x61, 0x7B)),
    "print": frozenset(range(0x20, 0x7F)),
    "punct": frozenset(c for c in range(0x21, 0x7F) if not chr(c).isalnum()),
    "space": frozenset(b" \t\n\r\f\v"),
    "upper": frozenset(range(0x41, 0x5B)),
    "word": _WORD,
    "xdigit": frozenset(b"0123456789ABCDEFabcdef"),
}
_SIMPLE_ESCAPES = {"a": 7, "f": 12, "t": 9, "n": 10, "r": 13, "v": 11}
_PERL_CLASSES = {
    "d": (_DIGIT, False),
    "D": (_DIGIT, True),
    "s": (_SPACE, False),
    "S": (_SPACE, True),
    "w": (_WORD, False),
    "W": (_WORD, True),
}
_OCTAL = "01234567"
_HEX = "0123456789abcdefABCDEF"


@attrs.frozen
class RegexVerdict:
    """`error` is None when Envoy will accept the regex; `program_size` is the estimate."""

    error: str | None
    program_size: int

    @property
    def ok(self) -> bool:
        return self.error is None


class _Reject(Exception):
    pass


def check_regex(pattern: str, max_program_size: int = MAX_PROGRAM_SIZE) -> RegexVerdict:
    """Whether Envoy's RE2 accepts `pattern`, with the reason when it does not."""
    if not pattern:
        return RegexVerdict("regex must not be empty", 0)
    try:
        size = _BASE_COST + _Parser(pattern).parse()
    except _Reject as rejection:
        return RegexVerdict(f"not a valid RE2 regex: {rejection}", 0)
    if size > max_program_size:
        return RegexVerdict(
            f"RE2 program size (estimated {size}) exceeds Envoy's limit of {max_program_size}",
            size,
        )
    return RegexVerdict(None, size)


def quote_regex(text: str) -> str:
    """`text` as an RE2 literal: every ASCII character except [A-Za-z0-9_] is escaped."""
    return "".join(
        char if ord(char) >= 0x80 or char.isalnum() or char == "_" else "\\" + char for char in text
    )


def _count_ranges(members: frozenset[int]) -> int:
    count = 0
    previous = -2
    for value in sorted(members):
        if value != previous + 1:
            count += 1
        previous = value
    return count


def _fold(members: frozenset[int]) -> frozenset[int]:
    extra = {ord(chr(c).swapcase()) for c in members if chr(c).isascii() and chr(c).isalpha()}
    return members | frozenset(extra)


class _Parser:
    """Recursive descent over RE2 syntax; each method returns the program-size cost of its node."""

    def __init__(self, pattern: str) -> None:
        self.text = pattern
        self.pos = 0
        self.fold = False
        self.dot_nl = False
        self.repeat_depth = 1

    # ---- helpers

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def parse(self) -> int:
        cost = self.alternation()
        if not self.at_end():
            raise _Reject(f"unexpected ): {self.text}")
        return cost

    # ---- grammar

    def alternation(self) -> int:
        costs = [self.concatenation()]
        while self.peek() == "|":
            self.pos += 1
            costs.append(self.concatenation())
        return sum(costs) + len(costs) - 1

    def concatenation(self) -> int:
        total = 0
        while not self.at_end() and self.peek() not in "|)":
            if self.peek() in "*+?":
                raise _Reject(f"missing argument to repetition operator: {self.peek()}")
            if self.peek() == "{" and self.repetition_ahead():
                raise _Reject("missing argument to repetition operator: {")
            total += self.repeat()
        return total

    def repetition_ahead(self) -> bool:
        """Is there a valid `{n}`, `{n,}` or `{n,m}` at the cursor? (else `{` is a literal)."""
        return self.brace_repetition(consume=False) is not None

    def brace_repetition(self, *, consume: bool) -> tuple[int, int | None] | None:
        text = self.text
        index = self.pos + 1
        start = index
        while index < len(text) and text[index].isdigit():
            index += 1
        if index == start:
            return None
        low = int(text[start:index])
        high: int | None = low
        if index < len(text) and text[index] == ",":
            index += 1
            start = index
            while index < len(text) and text[index].isdigit():
                index += 1
            high = int(text[start:index]) if index > start else None
        if index >= len(text) or text[index] != "}":
            return None
        if consume:
            self.pos = index + 1
        return (low, high)

    def repeat(self) -> int:
        depth_before = self.repeat_depth
        atom_start = self.pos
        cost = self.atom()
        repeated = False
        while not self.at_end():
            char = self.peek()
            if char in "*+?":
                operator = char
                self.pos += 1
                counts: tuple[int, int | None] = {"*": (0, None), "+": (1, None), "?": (0, 1)}[
                    operator
                ]
            elif char == "{" and self.repetition_ahead():
                brace = self.brace_repetition(consume=True)
                assert brace is not None
                counts = brace
                operator = "{"
            else:
                break
            if repeated:
                raise _Reject(f"bad repetition operator: {self.text[atom_start : self.pos]}")
            repeated = True
            if self.peek() == "?":  # non-greedy
                self.pos += 1
            low, high = counts
            if low > _MAX_REPEAT or (high is not None and (high > _MAX_REPEAT or high < low)):
                raise _Reject(f"invalid repetition size: {self.text[atom_start : self.pos]}")
            bound = high if high is not None else max(low, 1)
            if operator == "{":
                self.repeat_depth = depth_before * max(bound, 1)
                if self.repeat_depth > _MAX_REPEAT:
                    raise _Reject(f"bad repetition operator: {self.text[atom_start : self.pos]}")
            cost = self.repeat_cost(cost, low, high)
        self.repeat_depth = depth_before
        return cost

    @staticmethod
    def repeat_cost(cost: int, low: int, high: int | None) -> int:
        if high is None:  # RE2 guards unbounded loops over empty-matching bodies: +2
            return max(low, 1) * cost + 2
        return low * cost + (high - low) * (cost + 1)

    def atom(self) -> int:
        char = self.peek()
        if char == "(":
            return self.group()
        if char == "[":
            return self.char_class()
        if char == ".":
            self.pos += 1
            return 1 if self.dot_nl else 2
        if char in "^$":
            self.pos += 1
            return 1
        if char == "\\":
            return self.escape()
        self.pos += 1
        return len(char.encode())

    def group(self) -> int:
        self.pos += 1  # "("
        saved = (self.fold, self.dot_nl)
        capture_cost = 2
        if self.peek() == "?":
            capture_cost = self.group_prefix()
            if capture_cost < 0:  # a bare flag group "(?i)" changes flags for the rest
                return 0
        cost = self.alternation()
        if self.peek() != ")":
            raise _Reject(f"missing ): {self.text}")
        self.pos += 1
        self.fold, self.dot_nl = saved
        return cost + capture_cost

    def group_prefix(self) -> int:
        """After `(?`: named capture, non-capturing group or flags. -1 for a bare flag group."""
        rest = self.text[self.pos :]
        for opener in ("?P<", "?<"):
            if rest.startswith(opener) and not rest.startswith(("?<=", "?<!")):
                end = rest.find(">")
                name = rest[len(opener) : end] if end > 0 else ""
                if not name or not all(c.isalnum() or c == "_" for c in name) or not name.isascii():
                    raise _Reject(f"invalid named capture group: {rest[: end + 1]}")
                self.pos += end + 1
                return 2
        self.pos += 1  # "?"
        negated = False
        seen_flag = False
        while not self.at_end():
            char = self.peek()
            if char in "imsU":
                if char == "i":
                    self.fold = not negated
                if char == "s":
                    self.dot_nl = not negated
                seen_flag = True
                self.pos += 1
            elif char == "-" and not negated:
                negated = True
                seen_flag = False
                self.pos += 1
            elif char == ":" and (seen_flag or not negated):
                self.pos += 1
                return 0
            elif char == ")" and seen_flag:
                self.pos += 1
                return -1
            else:
                break
        raise _Reject(f"invalid perl operator: {rest[:3]}")

    def escape(self) -> int:
        self.pos += 1  # backslash
        if self.at_end():
            raise _Reject("trailing \\")
        char = self.peek()
        self.pos += 1
        if char in _PERL_CLASSES:
            members, negated = _PERL_CLASSES[char]
            return self.class_cost(members, negated)
        if char in "bBAz":
            return 1
        if char in "pP":
            self.unicode_class_name()
            return _UNKNOWN_CLASS_COST
        if char == "C":
            return 1
        if char == "Q":
            end = self.text.find("\\E", self.pos)
            literal = self.text[self.pos : end if end >= 0 else len(self.text)]
            self.pos = end + 2 if end >= 0 else len(self.text)
            return len(literal.encode())
        value = self.escaped_value(char)
        return 1 if value < 0x80 else len(chr(value).encode())

    def unicode_class_name(self) -> None:
        if self.peek() == "{":
            end = self.text.find("}", self.pos)
            if end < 0:
                raise _Reject("invalid character class range: \\p{")
            self.pos = end + 1
        elif self.at_end() or not self.peek().isalpha():
            raise _Reject("invalid character class range: \\p")
        else:
            self.pos += 1

    def escaped_value(self, char: str) -> int:
        """The character an escape stands for (cursor is after `char`); rejects the unknown."""
        if char in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[char]
        if char in _OCTAL:
            digits = char
            if char != "0" and (self.at_end() or self.peek() not in _OCTAL):
                raise _Reject(f"invalid escape sequence: \\{char}")  # a backreference
            while len(digits) < 3 and not self.at_end() and self.peek() in _OCTAL:
                digits += self.peek()
                self.pos += 1
            value = int(digits, 8)
            if value > 0xFF:
                raise _Reject(f"invalid escape sequence: \\{digits}")
            return value
        if char == "x":
            digits = self.text[self.pos : self.pos + 2]
            if len(digits) != 2 or any(d not in _HEX for d in digits):
                raise _Reject(f"invalid escape sequence: \\x{digits}")
            self.pos += 2
            return int(digits, 16)
        if char.isascii() and not char.isalnum():
            return ord(char)
        raise _Reject(f"invalid escape sequence: \\{char}")

    def class_cost(self, members: frozenset[int], negated: bool) -> int:
        if self.fold:
            members = _fold(members)
        if negated:
            members = _ALL - members
        return max(_count_ranges(members), 1)

    def char_class(self) -> int:
        self.pos += 1  # "["
        negated = False
        if self.peek() == "^":
            negated = True
            self.pos += 1
        members: set[int] = set()
        opaque = 0
        first = True
        while True:
            if self.at_end():
                raise _Reject(f"missing ]: {self.text}")
            char = self.peek()
            if char == "]" and not first:
                self.pos += 1
                break
            first = False
            if char == "[" and self.peek(1) == ":":
                end = self.text.find(":]", self.pos + 2)
                name = self.text[self.pos + 2 : end] if end >= 0 else ""
                negate_posix = name.startswith("^")
                posix = _POSIX.get(name.lstrip("^"))
                if posix is None:
                    raise _Reject(f"invalid character class range: [:{name}:]")
                members |= (_ALL - posix) if negate_posix else posix
                self.pos = end + 2
                continue
            low, class_members, unknown = self.class_atom()
            if class_members is not None or unknown:
                members |= class_members or set()
                opaque += _UNKNOWN_CLASS_COST if unknown else 0
                continue
            assert low is not None
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.pos += 1
                high, high_members, high_unknown = self.class_atom()
                if high is None or high_members is not None or high_unknown:
                    raise _Reject("invalid character class range")
                if high < low:
                    raise _Reject(f"invalid character class range: {chr(low)}-{chr(high)}")
                if high >= 0x80:
                    raise _Reject("non-ASCII character class ranges are not supported")
                members |= set(range(low, high + 1))
            else:
                members |= {low}
        return self.class_cost(frozenset(members), negated) + opaque

    def class_atom(self) -> tuple[int | None, set[int] | None, bool]:
        """One class element: (character, None, False), (None, members, False) or unknown."""
        char = self.peek()
        self.pos += 1
        if char != "\\":
            encoded = char.encode()
            if len(encoded) > 1:
                return (None, set(encoded), False)
            return (ord(char), None, False)
        if self.at_end():
            raise _Reject("trailing \\")
        char = self.peek()
        self.pos += 1
        if char in _PERL_CLASSES:
            base, negated = _PERL_CLASSES[char]
            return (None, set(_ALL - base if negated else base), False)
        if char in "pP":
            self.unicode_class_name()
            return (None, None, True)
        if char in "bBAzCQ":
            raise _Reject(f"invalid escape sequence: \\{char}")
        return (self.escaped_value(char), None, False)
