"""Documents -> value classes, derived from the attrs classes themselves.

A `cattrs.Converter` structures every value class from its document form: a field's key is
its name in camelCase (`section_name` -> `sectionName`, `from_` -> `from`), defaults are the
class's own, and the class's validators are the schema. What cattrs does not know is added
here: strings and integers are taken as written (never coerced), lists must be lists, a null
means "unset" as in Kubernetes, an unknown key is refused, and every failure becomes one
`Invalid` carrying the path inside the document (`rules[0].matches[1].path.type`).

A class whose document is not just its fields declares a `Shape` (keys accepted but not kept,
values the decoder computes, a `prepare` step for CEL rules on what the class does not store).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, ClassValidationError
from cattrs.gen import make_dict_structure_fn, override

from sut.gatewayapi.schema import FieldError

__all__ = [
    "Invalid",
    "Shape",
    "decode",
    "document_key",
    "from_spec",
    "hook",
    "mapping",
    "only",
    "shape",
    "structure",
    "type_name",
]

T = TypeVar("T")
Path = tuple[str | int, ...]


class Invalid(Exception):
    """A document refused: `message` for the user, `path` from the decoded value down."""

    def __init__(self, message: str, path: Path = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def under(self, *prefix: str | int) -> Invalid:
        return Invalid(self.message, (*prefix, *self.path))

    @property
    def where(self) -> str:
        """The path as Kubernetes prints it: `spec.rules[0].matches`."""
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text


@attrs.frozen
class Shape:
    """How a value class's document differs from its fields.

    `accepted`: further keys the document may hold (read by `prepare`, or valid but ignored).
    `computed`: attributes not read from the document; `prepare` or the caller supplies them.
    `open`: any other key is allowed and ignored (Kubernetes objects this gateway only skims).
    `prepare`: checks and reshapes the document (nulls dropped, keys known) before structuring.
    `hooks`: per attribute, how its value is read when it is not the field's type.
    """

    accepted: tuple[str, ...] = ()
    computed: tuple[str, ...] = ()
    open: bool = False
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    hooks: Mapping[str, Callable[[Any], Any]] = attrs.field(factory=dict)


_SHAPES: dict[type, Shape] = {}


def shape(cls: type, **options: Any) -> None:
    """Declare `cls`'s document `Shape` (before its first decode)."""
    _SHAPES[cls] = Shape(**options)


def document_key(attribute: str) -> str:
    """`section_name` -> `sectionName`; `from_` -> `from`."""
    head, *rest = attribute.rstrip("_").split("_")
    return head + "".join(part.capitalize() for part in rest)


def type_name(value: Any) -> str:
    """The YAML name of a value's type, for "must be a string, got integer"."""
    if value is None:
        return "null"
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer"}
    return names.get(type(value), type(value).__name__)


def mapping(value: Any) -> dict[str, Any]:
    """An object's keys that are set: null means unset, as the API server reads it."""
    if not isinstance(value, Mapping):
        raise Invalid(f"must be an object, got {type_name(value)}")
    return {str(key): item for key, item in value.items() if item is not None}


def only(document: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse a key outside `known`, as the API server's structural schema does."""
    allowed = frozenset(known)
    for key in document:
        if key not in allowed:
            raise Invalid(f"unknown field (known: {', '.join(sorted(allowed))})", (key,))


def decode(cls: type[T], value: Any, **given: Any) -> T:
    """`value` as a `cls`; `given` supplies computed attributes (a kind's `metadata`).

    Raises `Invalid` with the path of the first problem.
    """
    read: Callable[[Any, dict[str, Any]], T] = _structurer(cls)  # type: ignore[arg-type]
    return read(value, given)


def structure(value: Any, kind: Any) -> Any:
    """`value` as any type the decoder reads (a list of value classes, say)."""
    return _converter.structure(value, kind)


def _string(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a string, got {type_name(value)}")
    return value


def _integer(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"must be an integer, got {type_name(value)}")
    return value


def _integer_or_string(value: Any, _: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Invalid(f"must be an integer or a string, got {type_name(value)}")
    return value


def _is_list(kind: Any) -> bool:
    args = get_args(kind)
    return get_origin(kind) is tuple and len(args) == 2 and args[1] is Ellipsis


def _list_hook(kind: Any) -> Callable[[Any, Any], tuple[Any, ...]]:
    item_type = get_args(kind)[0]
    item_hook = _converter.get_structure_hook(item_type)

    def structure(value: Any, _: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise Invalid(f"must be a list, got {type_name(value)}")
        result = []
        for index, item in enumerate(value):
            try:
                result.append(item_hook(item, item_type))
            except Invalid as error:
                raise error.under(index) from None
        return tuple(result)

    return structure


def _given(value: Any, _: Any) -> Any:
    return value


def _field_hook(read: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda value, _: read(value)


@functools.cache
def _structurer(cls: type) -> Callable[[Any, dict[str, Any]], Any]:
    """The decoder of one value class: cattrs' generated function, wrapped for paths."""
    spec = _SHAPES.get(cls, Shape())
    keys = {
        field.name: document_key(field.name)
        for field in attrs.fields(cls)
        if field.init and field.name not in spec.computed
    }
    known = frozenset(keys.values()) | frozenset(spec.accepted)
    overrides: dict[str, Any] = {name: override(rename=key) for name, key in keys.items()}
    overrides.update({name: override(rename=name, struct_hook=_given) for name in spec.computed})
    for name, read in spec.hooks.items():
        overrides[name] = override(rename=keys[name], struct_hook=_field_hook(read))
    generated: Callable[[Mapping[str, Any], Any], Any] = make_dict_structure_fn(
        cls,
        _converter,
        _cattrs_forbid_extra_keys=False,
        _cattrs_detailed_validation=True,
        **overrides,
    )

    def structure(value: Any, given: dict[str, Any]) -> Any:
        document = mapping(value)
        if not spec.open:
            only(document, known)
        document.update(given)
        if spec.prepare is not None:
            document = spec.prepare(document)
        try:
            return generated(document, cls)
        except ClassValidationError as group:
            raise _first(group, keys) from None

    return structure


def _first(group: ClassValidationError, keys: Mapping[str, str]) -> Invalid:
    """The first failure of a class, located: a field's, or the object's own."""
    for error in group.exceptions:
        notes = [
            note
            for note in getattr(error, "__notes__", ())
            if isinstance(note, AttributeValidationNote)
        ]
        key = keys.get(notes[0].name, notes[0].name) if notes else None
        if isinstance(error, Invalid):
            return error.under(key) if key else error
        if isinstance(error, KeyError) and key:
            return Invalid("is required", (key,))
        if isinstance(error, FieldError):
            index = () if error.index is None else (error.index,)
            return Invalid(error.reason, (keys.get(error.field, error.field), *index))
        if isinstance(error, ValueError | TypeError):
            return Invalid(str(error))
    raise group  # not a complaint about the document: our own bug


def _class_hook(cls: type) -> Callable[[Any, Any], Any]:
    structure = _structurer(cls)
    return lambda value, _: structure(value, {})


_converter = cattrs.Converter(detailed_validation=True)
_converter.register_structure_hook(str, _string)
_converter.register_structure_hook(int, _integer)
_converter.register_structure_hook(int | str | None, _integer_or_string)
_converter.register_structure_hook_factory(attrs.has, _class_hook)
_converter.register_structure_hook_factory(_is_list, _list_hook)


def hook(kind: type, read: Callable[[Any], Any]) -> None:
    """Read every `kind` value with `read` (for a class whose document is not an object)."""
    _converter.register_structure_hook_func(lambda candidate: candidate is kind, _field_hook(read))


def from_spec(cls: type[T]) -> Callable[[dict[str, Any], Any], T]:
    """The reader of a kind whose fields are its `spec` (plus the `metadata` given)."""

    def read(root: dict[str, Any], metadata: Any) -> T:
        try:
            return decode(cls, root.get("spec"), metadata=metadata)
        except Invalid as error:
            raise error.under("spec") from None

    return read
