"""Field rules shared by every message class: one table entry per wire field.

A :class:`Rule` says what one field may hold: exactly one Python type (``type(v) is int``, on
purpose: msgpack decodes ints to ``int`` and never to ``bool``, while ``isinstance`` would let
``True`` pass as ``1``), bounds on the value (ints) or on its length (str, bin), and whether
nil is allowed. Message classes name a rule per field (``seq: Annotated[int, U32]``); the
codec checks them in two ways from the same table:

* :func:`compile_acceptor` turns a class's rules into one straight-line function that returns
  the message, or ``None`` at the first field that breaks its rule (the decode fast path: a
  generic loop costs ~0.3 us more per InputFrame, and the inbound path has an 8 us budget);
* :func:`check_rules` walks the rules and raises the error class it is given with a text
  naming the field, for the slow path (a rejected message, or one built locally).

One error class serves both directions: ``LocalProtocolError`` when our own code builds a bad
message, ``MalformedMessage`` when a peer sent one. Error texts never embed more than a short
preview of the value, so a 64 KiB string cannot inflate a ``ProtocolError`` reply.

Benchmark: part of the decode path in ``benchmarks/protocol.py``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

from astranet.errors import ProtocolError
from astranet.net.limits import I64_MIN, MAX_CLOSE_REASON_BYTES, U32_MAX, U64_MAX

ErrorClass = type[ProtocolError]

ROOM_ID_RE = re.compile(r"[A-Za-z0-9]{8}")
GAME_MODE_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")

_PREVIEW_CHARS = 32  # keeps error texts short whatever the peer sent


def close_reason(reason: str) -> str:
    """``reason`` cut to what a close frame holds: 123 bytes of UTF-8, never half a character."""
    encoded = reason.encode("utf-8")[:MAX_CLOSE_REASON_BYTES]
    return encoded.decode("utf-8", "ignore")


def preview(value: Any) -> str:
    """A short, safe description of ``value`` for error messages."""
    text = repr(value)
    if len(text) > _PREVIEW_CHARS:
        text = text[:_PREVIEW_CHARS] + "..."
    return f"{type(value).__name__} {text}"


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """What one wire field may hold.

    ``kind`` is the exact type (``None``: the message class checks the value itself, e.g.
    nested events); ``low``/``high`` bound an int's value or a str's/bin's length; nil passes
    when ``optional``; ``requires`` names a field that must be non-nil when this one is.
    ``what`` describes the rule in error texts ("a u32").
    """

    kind: type | None
    low: int = 0
    high: int = 0
    what: str = ""
    optional: bool = False
    requires: str | None = None

    def or_nil(self, *, requires: str | None = None) -> Rule:
        """The same rule with nil allowed (a WIRE addition, or a nullable field)."""
        return dataclasses.replace(self, optional=True, requires=requires)

    def complaint(self, name: str, value: Any) -> str | None:
        """Why ``value`` breaks this rule, or ``None`` when it does not."""
        if value is None:
            return None if self.optional else f"{name} must be {self.what}, got nil"
        kind = self.kind
        if kind is None:
            return None
        if type(value) is not kind:
            return f"{name} must be {self.what}, got {preview(value)}"
        measure = len(value) if kind is str or kind is bytes else value
        if not self.low <= measure <= self.high:
            return f"{name} must be {self.what}, got {preview(value)}"
        return None


def int_in(low: int, high: int) -> Rule:
    return Rule(int, low, high, f"an int in [{low}, {high}]")


def text(max_chars: int, *, min_chars: int = 0) -> Rule:
    return Rule(str, min_chars, max_chars, f"a str of {min_chars}-{max_chars} chars")


def blob(max_bytes: int) -> Rule:
    return Rule(bytes, 0, max_bytes, f"bin of at most {max_bytes} bytes")


def exact_blob(size: int) -> Rule:
    return Rule(bytes, size, size, f"bin of exactly {size} bytes")


U32 = Rule(int, 0, U32_MAX, "a u32")
U64 = Rule(int, 0, U64_MAX, "a u64")
#: Any int msgpack can carry (signed 64-bit up to u64): ``party_size`` is refused with
#: ``bad_request`` by its class, not as malformed.
ANY_INT = int_in(I64_MIN, U64_MAX)
BOOL = Rule(bool, 0, 1, "a bool")
#: Checked by the message class's own ``_check_values`` (only nil is refused here).
NESTED = Rule(None, what="present")


def check_rules(
    rules: Sequence[tuple[str, Rule]], get: Callable[[str], Any], err: ErrorClass
) -> None:
    """Raise ``err`` naming the first field (in table order) whose value breaks its rule."""
    for name, rule in rules:
        value = get(name)
        complaint = rule.complaint(name, value)
        requires = rule.requires
        if complaint is None and requires is not None and value is not None:
            complaint = None if get(requires) is not None else f"{name} without {requires}"
        if complaint is not None:
            raise err(complaint)


def _condition(variable: str, rule: Rule) -> str:
    """Python source that is true when ``variable`` breaks ``rule`` (nil handled apart)."""
    kind = rule.kind
    if kind is None:
        return "False"
    test = f"type({variable}) is not {kind.__name__}"
    if kind is bool:
        return test
    if kind is str or kind is bytes:
        measure = f"len({variable})"
        if rule.low == rule.high:
            return f"{test} or {measure} != {rule.high}"
        if rule.low == 0:
            return f"{test} or {measure} > {rule.high}"
    else:
        measure = variable
    return f"{test} or not {rule.low} <= {measure} <= {rule.high}"


def _rule_checks(rules: Sequence[tuple[str, Rule]], fetch: str) -> list[str]:
    """Source lines binding ``v0``, ``v1``... to the fields (``fetch`` formats a field name
    into an expression) and returning ``None`` at the first broken rule."""
    lines = []
    names = [name for name, _ in rules]
    for index, (name, rule) in enumerate(rules):
        variable = f"v{index}"
        lines.append(f"    {variable} = {fetch.format(name=name)}")
        broken = _condition(variable, rule)
        if rule.optional:
            lines.append(f"    if {variable} is not None and ({broken}):")
        elif rule.kind is None:
            lines.append(f"    if {variable} is None:")
        else:
            lines.append(f"    if {broken}:")
        lines.append("        return None")
    for index, (_, rule) in enumerate(rules):
        if rule.requires is not None:
            other = f"v{names.index(rule.requires)}"
            lines.append(f"    if v{index} is not None and {other} is None:")
            lines.append("        return None")
    return lines


def _compile(name: str, lines: list[str], namespace: dict[str, Any]) -> Callable[..., Any]:
    exec("\n".join(lines), namespace)  # the source comes from a rule table, never the wire
    return namespace[name]  # type: ignore[no-any-return]


def compile_acceptor(
    cls: type, rules: Sequence[tuple[str, Rule]]
) -> Callable[[dict[str, Any]], Any]:
    """``accept(wire) -> message | None`` for ``cls``: every rule of the table as
    straight-line code (as ``dataclasses`` writes ``__init__``), the fields set through their
    slot descriptors. ``None`` means some rule failed: ``check_rules`` says which."""
    lines = ["def accept(wire):", "    get = wire.get"]
    lines += _rule_checks(rules, "get({name!r})")
    lines.append("    msg = new(cls)")
    lines += [f"    set{index}(msg, v{index})" for index in range(len(rules))]
    lines.append("    return msg")
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    for index, (name, _) in enumerate(rules):
        namespace[f"set{index}"] = cls.__dict__[name].__set__  # the slot's own setter
    return _compile("accept", lines, namespace)


def compile_fits(cls: type, rules: Sequence[tuple[str, Rule]]) -> Callable[[Any], bool]:
    """``fits(msg) -> True | None`` for a built ``cls`` instance: the same checks as
    ``compile_acceptor`` on its attributes (a local message's construction fast path)."""
    lines = ["def fits(msg):"]
    lines += _rule_checks(rules, "msg.{name}")
    lines.append("    return True")
    return _compile("fits", lines, {})


def is_room_id(value: str) -> bool:
    return ROOM_ID_RE.fullmatch(value) is not None


def is_game_mode(value: str) -> bool:
    return GAME_MODE_RE.fullmatch(value) is not None
