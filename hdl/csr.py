"""A small declarative CSR layer: register descriptions as data, and an AXI4-Lite register bank.

The register map is *data* (:class:`RegisterMap` of :class:`Register` of :class:`Field`), in the
spirit of amaranth-soc's ``csr.Register``/``csr.Field``. From one description come

* the hardware, :class:`CSRBank` (an AXI4-Lite subordinate with one port per field);
* the host views (``ilmpq.firmware.regmap``): a Python module, a C header and a markdown page,
  and the :class:`RegisterMap` lookups and field encode/decode the driver uses.

Field access kinds (:class:`Access`)
-------------------------------------
``RW``
    Host writes (byte strobes honoured), host reads back; the hardware sees the value on an
    output port. Has a reset value.
``RO``
    The hardware drives an input port; host reads sample it. Host writes are ignored.
``CONST``
    A value fixed at elaboration (identification, geometry). No port.
``WO``
    Write-only: host writes (byte strobes honoured) are stored and the hardware sees the value
    on an output port, but host reads return 0 (secrets such as a MAC key). Has a reset value.
``W1P``
    Writing 1 to a bit gives a pulse of exactly one clock cycle on the output port, in the cycle
    after the write is performed; writing 0 does nothing; reads return 0.
``W1C``
    A sticky bit the hardware sets with a strobe (``set`` input, one bit per field bit); the host
    clears it by writing 1. When the hardware sets and the host clears the same bit in the same
    cycle, the set wins (no event is lost). The sticky value is on the ``value`` output.
``COUNTER``
    A 64-bit performance counter that adds the ``inc`` input (``inc_width`` bits, unsigned) every
    cycle and is zeroed by the ``clear`` strobe (clear has priority; the increment of that cycle
    is dropped). It wraps modulo 2**64. It occupies two words, ``<name>_lo`` at the register's
    offset and ``<name>_hi`` 4 bytes above; reading LO returns bits [31:0] and snapshots bits
    [63:32], which the next read of HI returns, so a LO-then-HI read pair is consistent while
    the counter runs. A counter register holds exactly one field.

Names are lower-case identifiers (``ctrl``, ``irq_en``); the C header upper-cases them
(``ILMPQ_CTRL_IRQ_EN_MASK``).
"""

from __future__ import annotations

import dataclasses
import enum as py_enum
import inspect
import keyword
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Shape, ShapeCastable, Signal, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden.errors import IlmpqTypeError, IlmpqValueError
from .axi import AXI4LiteSignature, AXIResp

__all__ = [
    "Access", "Field", "Register", "Constant", "EnumInfo", "RegisterMap", "RegisterMapError",
    "CSRBank", "fields_signature", "COUNTER_WIDTH", "DATA_WIDTH",
]

#: Width of the CSR data bus and of every non-counter register.
DATA_WIDTH = 32
#: Width of a ``COUNTER`` field (two data words).
COUNTER_WIDTH = 64

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED_NAMES = frozenset({"signature"})  # attribute of every wiring interface object


class RegisterMapError(IlmpqValueError):
    """An inconsistent register description; the message names it and what is allowed."""


class Access(py_enum.Enum):
    """How the host and the hardware access a field (see the module docstring)."""

    RW = "rw"
    RO = "ro"
    CONST = "const"
    WO = "wo"
    W1P = "w1p"
    W1C = "w1c"
    COUNTER = "counter"

    @property
    def host_writable(self) -> bool:
        """Whether a host write can change the field or cause an action."""
        return self in (Access.RW, Access.WO, Access.W1P, Access.W1C)

    @property
    def has_reset(self) -> bool:
        """Whether the field has a reset value (RW, WO, W1C) or a fixed value (CONST)."""
        return self in (Access.RW, Access.WO, Access.W1C, Access.CONST)


def _check_name(kind: str, name) -> str:
    if not isinstance(name, str):
        raise IlmpqTypeError(f"{kind} name must be a string, not {name!r}")
    if not _NAME_RE.match(name) or keyword.iskeyword(name) or name in _RESERVED_NAMES:
        raise RegisterMapError(
            f"{kind} name {name!r} is not allowed: names must match [a-z][a-z0-9_]*, and not be "
            f"a Python keyword or 'signature'")
    return name


def _check_int(what: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise IlmpqTypeError(f"{what} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise RegisterMapError(f"{what} = {value} is out of range: it must be in [{lo}, {hi}]")
    return int(value)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


# -- enums -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnumInfo:
    """Host view of an enum a field is typed with.

    Attributes
    ----------
    name : str
        Class name (``ErrorCode``); the generated C/Python symbols use ``snake`` (``ERROR_CODE``).
    members : tuple of (name, value, doc)
    """

    name: str
    members: tuple[tuple[str, int, str], ...]

    @property
    def snake(self) -> str:
        return _snake(self.name)

    @classmethod
    def from_enum(cls, enum_cls) -> "EnumInfo":
        docs = getattr(enum_cls, "__ilmpq_member_docs__", None)
        if docs is None:
            docs = _enum_member_docs(enum_cls)
        return cls(enum_cls.__name__,
                   tuple((m.name, int(m.value), docs.get(m.name, "")) for m in enum_cls))


def _enum_member_docs(enum_cls) -> dict[str, str]:
    """Read the ``#:`` comments of an enum's members from its source (empty if unavailable)."""
    try:
        src = inspect.getsource(enum_cls)
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    current = None
    for line in src.splitlines():
        m = re.match(r"\s*([A-Za-z_]\w*)\s*=\s*[^#]*?#:\s?(.*)$", line)
        if m:
            current = m.group(1)
            docs[current] = m.group(2).strip()
            continue
        m = re.match(r"\s*#:\s?(.*)$", line)
        if m and current is not None:
            docs[current] = f"{docs[current]} {m.group(1).strip()}".strip()
            continue
        current = None
    return docs


def _enum_width(enum_cls) -> int:
    values = [int(m.value) for m in enum_cls]
    if any(v < 0 for v in values):
        raise RegisterMapError(f"enum {enum_cls.__name__} has negative values; field enums "
                               f"must be unsigned")
    return max([1, *(v.bit_length() for v in values)])


# -- descriptions ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """One field of a register.

    Parameters
    ----------
    name : str
        Lower-case identifier, unique in its register.
    width : int
        Bits (1..32; ``COUNTER`` fields are always :data:`COUNTER_WIDTH`, use :meth:`counter`).
    access : Access
    lsb : int or None
        Bit position in the register; ``None`` places the field right above the previous one.
    reset : int
        Reset value (``RW``, ``W1C``) or the value of a ``CONST`` field; 0 for the other kinds.
    doc : str
        What the field means, for the generated documentation.
    enum : enum class or None
        Values the field takes (e.g. :class:`ilmpq.hdl.status.ErrorCode`); every member must fit
        ``width``. An Amaranth enum whose shape is ``unsigned(width)`` also types the port.
    inc_width : int or None
        ``COUNTER`` only: width of the per-cycle increment input (1..32).
    """

    name: str
    width: int
    access: Access
    lsb: int | None = None
    reset: int = 0
    doc: str = ""
    enum: type | None = None
    inc_width: int | None = None

    def __post_init__(self):
        _check_name("field", self.name)
        if not isinstance(self.access, Access):
            raise IlmpqTypeError(f"field {self.name!r}: access must be an Access member, "
                                 f"not {self.access!r}")
        if self.access is Access.COUNTER:
            _check_int(f"field {self.name!r}: counter width", self.width,
                       COUNTER_WIDTH, COUNTER_WIDTH)
            _check_int(f"field {self.name!r}: inc_width", self.inc_width, 1, DATA_WIDTH)
        else:
            _check_int(f"field {self.name!r}: width", self.width, 1, DATA_WIDTH)
            if self.inc_width is not None:
                raise RegisterMapError(f"field {self.name!r}: inc_width is only allowed on "
                                       f"COUNTER fields, not on {self.access.name}")
        if self.lsb is not None:
            _check_int(f"field {self.name!r}: lsb", self.lsb, 0, DATA_WIDTH - 1)
        if self.access.has_reset:
            _check_int(f"field {self.name!r}: reset", self.reset, 0, (1 << self.width) - 1)
        elif self.reset != 0:
            raise RegisterMapError(f"field {self.name!r}: a {self.access.name} field has no "
                                   f"reset value (got {self.reset!r}); only RW, W1C and CONST "
                                   f"fields do")
        if not isinstance(self.doc, str):
            raise IlmpqTypeError(f"field {self.name!r}: doc must be a string, not {self.doc!r}")
        if self.enum is not None:
            if not (isinstance(self.enum, type) and issubclass(self.enum, py_enum.Enum)):
                raise IlmpqTypeError(f"field {self.name!r}: enum must be an enum class, "
                                     f"not {self.enum!r}")
            if self.access is Access.COUNTER:
                raise RegisterMapError(f"field {self.name!r}: a COUNTER field cannot have an "
                                       f"enum")
            if _enum_width(self.enum) > self.width:
                raise RegisterMapError(
                    f"field {self.name!r}: enum {self.enum.__name__} needs "
                    f"{_enum_width(self.enum)} bits but the field is {self.width} bits wide")

    @classmethod
    def counter(cls, name: str, inc_width: int = 1, doc: str = "") -> "Field":
        """A :data:`COUNTER_WIDTH`-bit ``COUNTER`` field adding an ``inc_width``-bit input."""
        return cls(name, COUNTER_WIDTH, Access.COUNTER, inc_width=inc_width, doc=doc)

    @property
    def mask(self) -> int:
        """Mask of the field in its register word (``lsb`` applied)."""
        return ((1 << self.width) - 1) << (self.lsb or 0)

    @property
    def shape(self):
        """Shape of the field's hardware port: the enum if it has exactly this width."""
        if self.enum is not None and isinstance(self.enum, ShapeCastable):
            if Shape.cast(self.enum).width == self.width and not Shape.cast(self.enum).signed:
                return self.enum
        return unsigned(self.width)

    def to_dict(self) -> dict:
        return {"name": self.name, "lsb": self.lsb, "width": self.width,
                "access": self.access.value, "reset": self.reset, "doc": self.doc,
                "enum": None if self.enum is None else self.enum.__name__,
                "inc_width": self.inc_width}


@dataclass(frozen=True)
class Register:
    """One 32-bit register (or, for a counter, one 64-bit LO/HI word pair).

    Parameters
    ----------
    name : str
    offset : int
        Byte offset in the register window, a multiple of 4.
    fields : iterable of Field
        Fields with ``lsb=None`` are placed right above the previous field.
    doc : str
    """

    name: str
    offset: int
    fields: tuple[Field, ...]
    doc: str = ""

    def __post_init__(self):
        _check_name("register", self.name)
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or self.offset < 0 \
                or self.offset % 4:
            raise RegisterMapError(f"register {self.name!r}: offset {self.offset!r} must be a "
                                   f"non-negative multiple of 4")
        fields = tuple(self.fields) if isinstance(self.fields, Iterable) else None
        if not fields or not all(isinstance(f, Field) for f in fields):
            raise IlmpqTypeError(f"register {self.name!r}: fields must be a non-empty sequence "
                                 f"of Field, not {self.fields!r}")
        counters = [f for f in fields if f.access is Access.COUNTER]
        if counters and len(fields) != 1:
            raise RegisterMapError(f"register {self.name!r}: a COUNTER field must be the only "
                                   f"field of its register")
        placed = []
        next_lsb = 0
        used = 0
        names = set()
        for f in fields:
            if f.name in names:
                raise RegisterMapError(f"register {self.name!r}: field name {f.name!r} is used "
                                       f"twice")
            names.add(f.name)
            lsb = next_lsb if f.lsb is None else f.lsb
            f = dataclasses.replace(f, lsb=lsb)
            if f.access is not Access.COUNTER:
                if lsb + f.width > DATA_WIDTH:
                    raise RegisterMapError(
                        f"register {self.name!r}: field {f.name!r} at bits "
                        f"[{lsb + f.width - 1}:{lsb}] does not fit in {DATA_WIDTH} bits")
                if used & f.mask:
                    raise RegisterMapError(f"register {self.name!r}: field {f.name!r} overlaps "
                                           f"another field")
                used |= f.mask
            next_lsb = lsb + f.width
            placed.append(f)
        object.__setattr__(self, "fields", tuple(placed))
        if not isinstance(self.doc, str):
            raise IlmpqTypeError(f"register {self.name!r}: doc must be a string")

    # -- properties ----------------------------------------------------------------------------

    @property
    def is_counter(self) -> bool:
        return self.fields[0].access is Access.COUNTER

    @property
    def size(self) -> int:
        """Bytes the register occupies (8 for a counter)."""
        return 8 if self.is_counter else 4

    @property
    def words(self) -> tuple[tuple[str, int], ...]:
        """``(name, offset)`` of each 32-bit word: the register, or ``<name>_lo``/``_hi``."""
        if self.is_counter:
            return ((f"{self.name}_lo", self.offset), (f"{self.name}_hi", self.offset + 4))
        return ((self.name, self.offset),)

    @property
    def host_writable(self) -> bool:
        """Whether any field reacts to host writes (a write elsewhere answers SLVERR)."""
        return any(f.access.host_writable for f in self.fields)

    @property
    def reset(self) -> int:
        """Value read after reset, with every ``RO`` field taken as 0 (counters read 0)."""
        return sum(f.reset << f.lsb for f in self.fields if f.access.has_reset)

    def field(self, name: str) -> Field:
        """Return the field ``name``; the error lists the register's fields."""
        for f in self.fields:
            if f.name == name:
                return f
        raise RegisterMapError(f"register {self.name!r} has no field {name!r}; its fields are: "
                               f"{', '.join(f.name for f in self.fields)}")

    # -- host helpers --------------------------------------------------------------------------

    def encode(self, base: int = 0, **values) -> int:
        """Return the word ``base`` with the named fields replaced by ``values``.

        Values must fit their field (enum members are accepted). Use ``base`` = a value read
        back to keep the other fields (for example ``irq_en`` when writing ``start``).
        """
        if self.is_counter:
            raise RegisterMapError(f"register {self.name!r} is a counter; it has no fields to "
                                   f"encode")
        word = _check_int(f"register {self.name!r}: base value", base, 0, (1 << DATA_WIDTH) - 1)
        for name, value in values.items():
            f = self.field(name)
            if isinstance(value, py_enum.Enum):
                value = value.value
            value = _check_int(f"field {self.name}.{name}", value, 0, (1 << f.width) - 1)
            word = (word & ~f.mask) | (value << f.lsb)
        return word

    def decode(self, value: int) -> dict[str, int]:
        """Split a word read from the register into ``{field: value}`` (enums where known)."""
        width = COUNTER_WIDTH if self.is_counter else DATA_WIDTH
        value = _check_int(f"register {self.name!r}: value", value, 0, (1 << width) - 1)
        out = {}
        for f in self.fields:
            v = (value >> f.lsb) & ((1 << f.width) - 1)
            if f.enum is not None:
                try:
                    v = f.enum(v)
                except ValueError:
                    pass  # an undefined code stays an int; the driver reports it as unknown
            out[f.name] = v
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "offset": self.offset, "doc": self.doc,
                "fields": [f.to_dict() for f in self.fields]}


@dataclass(frozen=True)
class Constant:
    """A named constant of the map (configuration geometry, IDs) for the generated headers."""

    name: str
    value: int | str
    doc: str = ""

    def __post_init__(self):
        _check_name("constant", self.name)
        if isinstance(self.value, bool) or not isinstance(self.value, (int, str)):
            raise IlmpqTypeError(f"constant {self.name!r}: value must be an int or a str, "
                                 f"not {self.value!r}")
        if isinstance(self.value, int) and not 0 <= self.value < 2**64:
            raise RegisterMapError(f"constant {self.name!r} = {self.value} must be in "
                                   f"[0, 2**64)")
        if isinstance(self.value, str) and not re.match(r"^[\w .+-]*$", self.value):
            raise RegisterMapError(f"constant {self.name!r}: string value {self.value!r} may "
                                   f"only hold letters, digits, spaces and . + - _")


class RegisterMap:
    """A validated register map: registers in a ``2**addr_width``-byte window.

    Parameters
    ----------
    name : str
        Map name; the generated C symbols are prefixed with ``NAME_`` (``ILMPQ_``).
    registers : iterable of Register
    addr_width : int
        Address bits of the window (the AXI4-Lite ``awaddr``/``araddr`` width).
    constants : iterable of Constant
    doc : str

    Raises
    ------
    RegisterMapError
        Duplicate names, overlapping registers, a register outside the window, two generated
        symbols with the same name, or one enum name for two different enums.
    """

    def __init__(self, name: str, registers: Iterable[Register], *, addr_width: int = 12,
                 constants: Iterable[Constant] = (), doc: str = ""):
        self.name = _check_name("register map", name)
        self.addr_width = _check_int("addr_width", addr_width, 3, 32)
        self.doc = doc
        self.registers: tuple[Register, ...] = tuple(registers)
        self.constants: tuple[Constant, ...] = tuple(constants)
        if not all(isinstance(r, Register) for r in self.registers):
            raise IlmpqTypeError("registers must be Register objects")
        if not all(isinstance(c, Constant) for c in self.constants):
            raise IlmpqTypeError("constants must be Constant objects")
        self._by_name: dict[str, Register] = {}
        self._words: dict[str, tuple[Register, int]] = {}
        spans = []
        for reg in self.registers:
            if reg.name in self._by_name:
                raise RegisterMapError(f"register name {reg.name!r} is used twice")
            self._by_name[reg.name] = reg
            if reg.offset + reg.size > (1 << self.addr_width):
                raise RegisterMapError(
                    f"register {reg.name!r} at offset {reg.offset:#x} does not fit the "
                    f"{1 << self.addr_width}-byte window of a {self.addr_width}-bit address")
            spans.append((reg.offset, reg.offset + reg.size, reg.name))
        spans.sort()
        for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
            if b0 < a1:
                raise RegisterMapError(f"registers {an!r} and {bn!r} overlap at offset {b0:#x}")
        for reg in self.registers:
            for word, offset in reg.words:
                if word in self._words or (word != reg.name and word in self._by_name):
                    raise RegisterMapError(f"word name {word!r} of register {reg.name!r} "
                                           f"clashes with another register")
                self._words[word] = (reg, offset)
        self.enums: dict[str, EnumInfo] = {}
        for reg in self.registers:
            for f in reg.fields:
                if f.enum is not None:
                    info = EnumInfo.from_enum(f.enum)
                    if self.enums.setdefault(info.name, info) != info:
                        raise RegisterMapError(f"two different enums are named {info.name!r}")
        seen: dict[str, str] = {}
        for sym, _value, what in self.symbols():
            if sym in seen:
                raise RegisterMapError(f"generated symbol {sym} of {what} clashes with "
                                       f"{seen[sym]}")
            seen[sym] = what

    # -- lookups -------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Register:
        try:
            return self._by_name[name]
        except KeyError:
            raise RegisterMapError(
                f"register map {self.name!r} has no register {name!r}; registers are: "
                f"{', '.join(self._by_name)}") from None

    def __contains__(self, name) -> bool:
        return name in self._by_name

    def __iter__(self):
        return iter(self.registers)

    def __len__(self) -> int:
        return len(self.registers)

    def __repr__(self):
        return f"RegisterMap({self.name!r}, {len(self.registers)} registers)"

    def __eq__(self, other):
        return isinstance(other, RegisterMap) and self.to_dict() == other.to_dict()

    def offset(self, name: str) -> int:
        """Byte offset of a register or of a counter word (``cycles_lo``, ``cycles_hi``)."""
        if name in self._words:
            return self._words[name][1]
        return self[name].offset

    def field(self, register: str, field: str) -> Field:
        return self[register].field(field)

    def encode(self, register: str, base: int = 0, **values) -> int:
        """See :meth:`Register.encode`."""
        return self[register].encode(base, **values)

    def decode(self, register: str, value: int) -> dict[str, int]:
        """See :meth:`Register.decode`."""
        return self[register].decode(value)

    def word_at(self, offset: int) -> tuple[Register, str] | None:
        """``(register, word name)`` at a byte offset (low 2 bits ignored), or ``None``."""
        offset &= ~3
        for word, (reg, off) in self._words.items():
            if off == offset:
                return reg, word
        return None

    def constant(self, name: str) -> int | str:
        for c in self.constants:
            if c.name == name:
                return c.value
        raise RegisterMapError(f"register map {self.name!r} has no constant {name!r}; "
                               f"constants are: {', '.join(c.name for c in self.constants)}")

    @property
    def counters(self) -> tuple[Register, ...]:
        return tuple(r for r in self.registers if r.is_counter)

    # -- generated symbols ---------------------------------------------------------------------

    def symbols(self) -> list[tuple[str, int | str, str]]:
        """Every generated symbol ``(NAME, value, what)``, without the C ``NAME_`` prefix.

        ``<REG>_OFFSET``, ``<REG>_RESET`` (non-counter), ``<REG>_LO_OFFSET``/``<REG>_HI_OFFSET``
        (counters), ``<REG>_<FIELD>_SHIFT``/``_WIDTH``/``_MASK`` (in place), ``_RESET`` (RW,
        W1C, CONST fields), ``<ENUM>_<MEMBER>``, the constants, ``CSR_ADDR_WIDTH`` and
        ``CSR_SIZE``. The Python module and the C header use exactly these names.
        """
        out: list[tuple[str, int | str, str]] = [
            ("CSR_ADDR_WIDTH", self.addr_width, "the map's address width"),
            ("CSR_SIZE", 1 << self.addr_width, "the map's window size"),
        ]
        for c in self.constants:
            out.append((c.name.upper(), c.value, f"constant {c.name}"))
        for reg in self.registers:
            R = reg.name.upper()
            what = f"register {reg.name}"
            out.append((f"{R}_OFFSET", reg.offset, what))
            if reg.is_counter:
                out.append((f"{R}_LO_OFFSET", reg.offset, what))
                out.append((f"{R}_HI_OFFSET", reg.offset + 4, what))
                continue
            out.append((f"{R}_RESET", reg.reset, what))
            for f in reg.fields:
                F = f"{R}_{f.name.upper()}"
                what = f"field {reg.name}.{f.name}"
                out += [(f"{F}_SHIFT", f.lsb, what), (f"{F}_WIDTH", f.width, what),
                        (f"{F}_MASK", f.mask, what)]
                if f.access.has_reset:
                    out.append((f"{F}_RESET", f.reset, what))
        for info in self.enums.values():
            for member, value, _doc in info.members:
                out.append((f"{info.snake.upper()}_{member}", value, f"enum {info.name}"))
        return out

    # -- plain-data form -----------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The map as plain data (ints, strings, lists, dicts): what the generated Python
        module stores and :meth:`from_dict` reads back."""
        return {
            "name": self.name, "addr_width": self.addr_width, "data_width": DATA_WIDTH,
            "doc": self.doc,
            "constants": [{"name": c.name, "value": c.value, "doc": c.doc}
                          for c in self.constants],
            "enums": [{"name": e.name,
                       "members": [{"name": n, "value": v, "doc": d} for n, v, d in e.members]}
                      for e in self.enums.values()],
            "registers": [r.to_dict() for r in self.registers],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "RegisterMap":
        """Rebuild a map from :meth:`to_dict` data; enums become :class:`enum.IntEnum`."""
        try:
            if data.get("data_width", DATA_WIDTH) != DATA_WIDTH:
                raise RegisterMapError(f"register map data width must be {DATA_WIDTH}, not "
                                       f"{data['data_width']!r}")
            enums = {}
            for e in data.get("enums", ()):
                members = {m["name"]: m["value"] for m in e["members"]}
                enum_cls = py_enum.IntEnum(e["name"], members)
                enum_cls.__ilmpq_member_docs__ = {m["name"]: m.get("doc", "")
                                                  for m in e["members"]}
                enums[e["name"]] = enum_cls
            registers = []
            for r in data["registers"]:
                fields = []
                for f in r["fields"]:
                    enum_name = f.get("enum")
                    if enum_name is not None and enum_name not in enums:
                        raise RegisterMapError(f"field {r['name']}.{f['name']} uses enum "
                                               f"{enum_name!r}, which the map does not define")
                    fields.append(Field(
                        f["name"], f["width"], Access(f["access"]), lsb=f.get("lsb"),
                        reset=f.get("reset", 0), doc=f.get("doc", ""),
                        enum=None if enum_name is None else enums[enum_name],
                        inc_width=f.get("inc_width")))
                registers.append(Register(r["name"], r["offset"], fields, r.get("doc", "")))
            constants = [Constant(c["name"], c["value"], c.get("doc", ""))
                         for c in data.get("constants", ())]
            return cls(data["name"], registers, addr_width=data["addr_width"],
                       constants=constants, doc=data.get("doc", ""))
        except (KeyError, TypeError, AttributeError) as e:
            if isinstance(e, IlmpqTypeError):
                raise
            raise RegisterMapError(f"malformed register map data: {type(e).__name__}: "
                                   f"{e}") from None


# -- hardware ----------------------------------------------------------------------------------

def _field_member(f: Field):
    if f.access in (Access.RW, Access.WO, Access.W1P):
        return Out(f.shape)
    if f.access is Access.RO:
        return In(f.shape)
    if f.access is Access.W1C:
        return Out(wiring.Signature({"set": In(f.width), "value": Out(f.width)}))
    if f.access is Access.COUNTER:
        return Out(wiring.Signature({"inc": In(f.inc_width), "clear": In(1),
                                     "value": Out(COUNTER_WIDTH)}))
    return None  # CONST: no port


def fields_signature(regmap: RegisterMap) -> wiring.Signature:
    """Signature of :attr:`CSRBank.fields` (bank's view): one member per register, one per
    field; registers with only ``CONST`` fields have no member."""
    members = {}
    for reg in regmap:
        reg_members = {}
        for f in reg.fields:
            member = _field_member(f)
            if member is not None:
                reg_members[f.name] = member
        if reg_members:
            members[reg.name] = Out(wiring.Signature(reg_members))
    return wiring.Signature(members)


class CSRBank(wiring.Component):
    """AXI4-Lite register bank generated from a :class:`RegisterMap`.

    Parameters
    ----------
    regmap : RegisterMap or iterable of Register
        The registers (a bare list becomes a map named ``csr``).
    addr_width : int or None
        Bus address width; defaults to the map's. It may be wider than the map's, never
        narrower.

    Members
    -------
    bus : ``In(AXI4LiteSignature(addr_width=addr_width))``
        The subordinate port. ``awready``/``wready``/``arready`` depend only on internal state
        (never combinationally on a ``valid``). AW and W are accepted independently, in either
        order; one write and one read are handled at a time. Write: the cycle after both AW and
        W have been accepted the write is performed and ``bvalid`` rises the cycle after that;
        a new AW/W is accepted once B has been transferred. Read: ``rvalid`` rises the cycle
        after the AR handshake, with the data sampled at the handshake edge; ``arready`` is low
        while ``rvalid`` is high. Address bits [1:0] and ``awprot``/``arprot`` are ignored.
        ``wstrb`` bit *i* enables the write of bits [8i+7:8i] for every field kind. Responses:
        ``OKAY``; ``SLVERR`` for an unmapped address (reads return 0, writes change nothing)
        and for a write to a register with no host-writable field (nothing changes).
    fields : ``Out(fields_signature(regmap))``
        ``fields.<register>.<field>``: ``RW`` and ``WO`` → output (the register value),
        ``W1P`` → output (one-cycle pulse), ``RO`` → input, ``W1C`` → ``set`` input and ``value`` output,
        ``COUNTER`` → ``inc`` and ``clear`` inputs and ``value`` output (64 bits). ``CONST``
        fields have no port.
    """

    def __init__(self, regmap: RegisterMap | Iterable[Register], *,
                 addr_width: int | None = None):
        if not isinstance(regmap, RegisterMap):
            if isinstance(regmap, Register) or not isinstance(regmap, Iterable):
                raise IlmpqTypeError(f"CSRBank needs a RegisterMap or an iterable of "
                                     f"Register, not {regmap!r}")
            regmap = RegisterMap("csr", regmap, addr_width=addr_width or 12)
        if addr_width is None:
            addr_width = regmap.addr_width
        _check_int("CSRBank addr_width", addr_width, regmap.addr_width, 32)
        self._regmap = regmap
        self._addr_width = addr_width
        super().__init__({
            "bus": In(AXI4LiteSignature(addr_width=addr_width, data_width=DATA_WIDTH)),
            "fields": Out(fields_signature(regmap)),
        })

    @property
    def regmap(self) -> RegisterMap:
        return self._regmap

    @property
    def addr_width(self) -> int:
        return self._addr_width

    def elaborate(self, platform):
        m = Module()
        bus = self.bus

        # ---- write channel: AW and W latched independently, performed once both are in ----
        aw_addr = Signal(self._addr_width)
        aw_full = Signal()
        w_data = Signal(DATA_WIDTH)
        w_strb = Signal(DATA_WIDTH // 8)
        w_full = Signal()
        bvalid = Signal()
        bresp = Signal(2)
        m.d.comb += [
            bus.awready.eq(~aw_full & ~bvalid),
            bus.wready.eq(~w_full & ~bvalid),
            bus.bvalid.eq(bvalid),
            bus.bresp.eq(bresp),
        ]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_addr.eq(bus.awaddr), aw_full.eq(1)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_data.eq(bus.wdata), w_strb.eq(bus.wstrb), w_full.eq(1)]
        with m.If(bvalid & bus.bready):
            m.d.sync += bvalid.eq(0)
        do_write = Signal()
        write_ok = Signal()
        m.d.comb += do_write.eq(aw_full & w_full)
        with m.If(do_write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bvalid.eq(1),
                         bresp.eq(Mux(write_ok, AXIResp.OKAY, AXIResp.SLVERR))]
        w_mask = Signal(DATA_WIDTH)
        m.d.comb += w_mask.eq(Cat(*(s.replicate(8) for s in w_strb)))
        w_ones = Signal(DATA_WIDTH)     # bits written as 1, strobes applied
        m.d.comb += w_ones.eq(w_data & w_mask)
        w_word = aw_addr[2:]

        # ---- read channel: data registered at the AR handshake ----
        rvalid = Signal()
        rdata = Signal(DATA_WIDTH)
        rresp = Signal(2)
        m.d.comb += [
            bus.arready.eq(~rvalid),
            bus.rvalid.eq(rvalid),
            bus.rdata.eq(rdata),
            bus.rresp.eq(rresp),
        ]
        ar_take = Signal()
        m.d.comb += ar_take.eq(bus.arvalid & ~rvalid)
        r_word = bus.araddr[2:]
        rd_value = Signal(DATA_WIDTH)
        rd_ok = Signal()
        with m.If(rvalid & bus.rready):
            m.d.sync += rvalid.eq(0)
        with m.If(ar_take):
            m.d.sync += [rvalid.eq(1), rdata.eq(rd_value),
                         rresp.eq(Mux(rd_ok, AXIResp.OKAY, AXIResp.SLVERR))]

        # Address decoding uses m.Switch only: a comparison with word 0 would be emitted as a
        # logical NOT of a vector (a Verilator WIDTHTRUNC warning).
        words: list[tuple[int, Value]] = []      # (word index, 32-bit read value)
        wsels: list[tuple[int, Signal]] = []     # (word index, write-select) of writable words
        rsels: list[tuple[int, Signal]] = []     # (word index, read-select) of counter LO words
        for reg in self._regmap:
            idx = reg.offset >> 2
            port = getattr(self.fields, reg.name, None)
            wsel = Signal(name=f"wsel_{reg.name}")
            if reg.is_counter:
                f = reg.fields[0]
                fport = getattr(port, f.name)
                count = Signal(COUNTER_WIDTH, name=f"{reg.name}_count")
                snap = Signal(DATA_WIDTH, name=f"{reg.name}_snap")
                with m.If(fport.clear):
                    m.d.sync += count.eq(0)
                with m.Else():
                    m.d.sync += count.eq(count + fport.inc)
                rsel = Signal(name=f"rsel_{reg.name}_lo")
                rsels.append((idx, rsel))
                with m.If(ar_take & rsel):
                    m.d.sync += snap.eq(count[DATA_WIDTH:])
                m.d.comb += fport.value.eq(count)
                words.append((idx, count[:DATA_WIDTH]))
                words.append((idx + 1, snap))
                continue
            if reg.host_writable:
                wsels.append((idx, wsel))
            parts: list[tuple[int, Value]] = []     # (lsb, value) of the read word
            for f in reg.fields:
                sl = slice(f.lsb, f.lsb + f.width)
                if f.access is Access.CONST:
                    parts.append((f.lsb, Const(f.reset, f.width)))
                elif f.access is Access.RO:
                    parts.append((f.lsb, Value.cast(getattr(port, f.name))))
                elif f.access in (Access.RW, Access.WO):
                    value = Signal(f.width, init=f.reset, name=f"{reg.name}_{f.name}")
                    with m.If(wsel):
                        m.d.sync += value.eq((value & ~w_mask[sl]) | (w_data[sl] & w_mask[sl]))
                    m.d.comb += Value.cast(getattr(port, f.name)).eq(value)
                    if f.access is Access.RW:       # a WO field reads as 0
                        parts.append((f.lsb, value))
                elif f.access is Access.W1P:
                    pulse = Signal(f.width, name=f"{reg.name}_{f.name}")
                    m.d.sync += pulse.eq(Mux(wsel, w_ones[sl], 0))
                    m.d.comb += Value.cast(getattr(port, f.name)).eq(pulse)
                elif f.access is Access.W1C:
                    fport = getattr(port, f.name)
                    sticky = Signal(f.width, init=f.reset, name=f"{reg.name}_{f.name}")
                    m.d.sync += sticky.eq((sticky & ~Mux(wsel, w_ones[sl], 0)) | fport.set)
                    m.d.comb += fport.value.eq(sticky)
                    parts.append((f.lsb, sticky))
                else:  # pragma: no cover - every Access kind is handled above
                    raise AssertionError(f.access)
            words.append((idx, _assemble(parts)))

        with m.Switch(w_word):
            for idx, wsel in wsels:
                with m.Case(idx):
                    m.d.comb += [write_ok.eq(1), wsel.eq(do_write)]
            with m.Default():   # every signal assigned here too: complete Verilog case
                m.d.comb += [write_ok.eq(0), *(wsel.eq(0) for _, wsel in wsels)]
        rsel_of = dict(rsels)
        with m.Switch(r_word):
            for idx, value in words:
                with m.Case(idx):
                    m.d.comb += [rd_value.eq(value), rd_ok.eq(1)]
                    if idx in rsel_of:
                        m.d.comb += rsel_of[idx].eq(1)
            with m.Default():
                m.d.comb += [rd_value.eq(0), rd_ok.eq(0), *(rsel.eq(0) for _, rsel in rsels)]
        return m


def _assemble(parts: list[tuple[int, Value]]) -> Value:
    """A :data:`DATA_WIDTH`-bit word from ``(lsb, value)`` parts, zeros in the gaps."""
    pieces = []
    pos = 0
    for lsb, value in sorted(parts, key=lambda p: p[0]):
        if lsb > pos:
            pieces.append(Const(0, lsb - pos))
        pieces.append(value)
        pos = lsb + len(value)
    if pos < DATA_WIDTH:
        pieces.append(Const(0, DATA_WIDTH - pos))
    return Cat(*pieces)
