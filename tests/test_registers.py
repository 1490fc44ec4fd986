from __future__ import annotations

import math

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from drivers.base import ValueKind
from drivers.plcs.registers import (
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    ReadBlock,
    RegisterAddress,
    RegisterSpec,
    Table,
    ValueType,
    WordOrder,
    plan_reads,
)


def addr(text: str) -> RegisterAddress:
    return RegisterAddress.parse(text)


@pytest.mark.parametrize(
    "case",
    [
        ("coil:0", Table.COIL, 0, ValueType.BOOL, None, 1),
        ("discrete:7:bool", Table.DISCRETE, 7, ValueType.BOOL, None, 1),
        ("holding:10", Table.HOLDING, 10, ValueType.UINT16, None, 1),
        ("input:3:int16", Table.INPUT, 3, ValueType.INT16, None, 1),
        ("holding:100:uint32", Table.HOLDING, 100, ValueType.UINT32, None, 2),
        ("holding:100:int32", Table.HOLDING, 100, ValueType.INT32, None, 2),
        ("holding:110:float32", Table.HOLDING, 110, ValueType.FLOAT32, None, 2),
        ("holding:200:string:64", Table.HOLDING, 200, ValueType.STRING, 64, 32),
        ("holding:200:string:5", Table.HOLDING, 200, ValueType.STRING, 5, 3),
        (" Holding:65535 ", Table.HOLDING, 65535, ValueType.UINT16, None, 1),
    ],
)
def test_parse_valid(case: tuple[str, Table, int, ValueType, int | None, int]) -> None:
    text, table, address, value_type, length, width = case
    parsed = addr(text)
    assert (parsed.table, parsed.address, parsed.type, parsed.length) == (
        table,
        address,
        value_type,
        length,
    )
    assert parsed.width == width
    assert addr(str(parsed)) == parsed


def test_canonical_text() -> None:
    assert str(addr("coil:0:bool")) == "coil:0"
    assert str(addr("holding:10:uint16")) == "holding:10"
    assert str(addr("holding:100:uint32")) == "holding:100:uint32"
    assert str(addr("holding:200:string:64")) == "holding:200:string:64"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("holding", "is not TABLE:ADDRESS"),
        ("holding:1:uint16:2:3", "is not TABLE:ADDRESS"),
        ("register:1", "unknown table 'register'"),
        ("holding:-1", "not a non-negative decimal number"),
        ("holding:x", "not a non-negative decimal number"),
        ("holding:65536", "address must be 0..65535"),
        ("holding:65535:uint32", "runs past address 65535"),
        ("holding:1:float64", "unknown type 'float64'"),
        ("coil:1:uint16", "type must be bool"),
        ("discrete:1:string:4", "type must be bool"),
        ("holding:200:string", "string needs a length"),
        ("holding:200:string:0", "string length must be 1..250"),
        ("holding:200:string:251", "string length must be 1..250"),
        ("holding:200:uint16:4", "only string takes a length"),
    ],
)
def test_parse_invalid_says_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        addr(text)
    assert repr(text.strip()) in str(info.value) or text.split(":", maxsplit=1)[0] in str(
        info.value
    )


ROUND_TRIPS: list[tuple[str, object]] = [
    ("coil:0", True),
    ("coil:0", False),
    ("holding:0", 0),
    ("holding:0", 65535),
    ("holding:0:int16", -32768),
    ("holding:0:int16", 32767),
    ("holding:0:uint32", 0),
    ("holding:0:uint32", 4_294_967_295),
    ("holding:0:uint32", 70_000),
    ("holding:0:int32", -2_147_483_648),
    ("holding:0:int32", -70_000),
    ("holding:0:float32", 4.25),
    ("holding:0:float32", -1024.5),
    ("holding:0:float32", 2.0**100),
    ("holding:0:string:64", "(01)09501101530003(10)L1(21)000001"),
    ("holding:0:string:5", "abcde"),
    ("holding:0:string:6", "Füll"),
    ("holding:0:string:4", ""),
]


@pytest.mark.parametrize("word_order", ["big", "little"])
@pytest.mark.parametrize(("text", "value"), ROUND_TRIPS)
def test_round_trip(text: str, value: float | str, word_order: WordOrder) -> None:
    address = addr(text)
    order = word_order
    raw = address.encode(value, word_order=order)
    assert len(raw) == address.width
    assert address.decode(raw, word_order=order) == value


def test_word_order_and_byte_layout() -> None:
    uint32 = addr("holding:100:uint32")
    assert uint32.encode(0x12345678) == [0x1234, 0x5678]
    assert uint32.encode(0x12345678, word_order="little") == [0x5678, 0x1234]
    assert uint32.decode([0x5678, 0x1234], word_order="little") == 0x12345678
    assert addr("holding:0:float32").encode(1.0) == [0x3F80, 0x0000]
    assert addr("holding:0:int16").decode([0xFFFF]) == -1
    text = addr("holding:200:string:5")
    assert text.encode("abc") == [0x6162, 0x6300, 0x0000]
    # word order never applies to strings: bytes are big-endian within each register
    assert text.encode("abc", word_order="little") == [0x6162, 0x6300, 0x0000]
    assert text.decode([0x6162, 0x6300, 0x0000]) == "abc"


def test_float_is_rounded_to_single_precision() -> None:
    value = addr("holding:0:float32").decode(addr("holding:0:float32").encode(4.1))
    assert isinstance(value, float)
    assert math.isclose(value, 4.1, rel_tol=1e-6)


@pytest.mark.parametrize(
    ("text", "value", "error"),
    [
        ("holding:0", 65536, ValueError),
        ("holding:0", -1, ValueError),
        ("holding:0:int16", 40000, ValueError),
        ("holding:0:uint32", 2**32, ValueError),
        ("holding:0", "12", TypeError),
        ("holding:0", True, TypeError),
        ("holding:0", 1.5, TypeError),
        ("holding:0:string:4", "too long", ValueError),
        ("holding:0:string:4", 12, TypeError),
        ("coil:0", "yes", TypeError),
    ],
)
def test_encode_rejects_bad_values(text: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        addr(text).encode(value)  # type: ignore[arg-type]


def test_decode_checks_its_input() -> None:
    with pytest.raises(ValueError, match="needs 2 values"):
        addr("holding:0:uint32").decode([1])
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        addr("holding:0").decode([70000])


def test_plan_coalesces_neighbours_per_table() -> None:
    plan = plan_reads(
        [
            addr("coil:0"),
            addr("coil:1"),
            addr("holding:10"),
            addr("holding:100:uint32"),
            addr("holding:110:float32"),
            addr("holding:112"),
            addr("holding:200:string:64"),
            addr("input:5"),
        ]
    )
    assert plan == [
        ReadBlock(Table.COIL, 0, 2),
        ReadBlock(Table.HOLDING, 10, 1),
        ReadBlock(Table.HOLDING, 100, 13),
        ReadBlock(Table.HOLDING, 200, 32),
        ReadBlock(Table.INPUT, 5, 1),
    ]


def test_plan_merges_small_gaps_only() -> None:
    assert plan_reads([addr("holding:0"), addr("holding:9")]) == [ReadBlock(Table.HOLDING, 0, 10)]
    assert plan_reads([addr("holding:0"), addr("holding:10")]) == [
        ReadBlock(Table.HOLDING, 0, 1),
        ReadBlock(Table.HOLDING, 10, 1),
    ]
    assert plan_reads([addr("holding:0"), addr("holding:3")], max_gap_words=0) == [
        ReadBlock(Table.HOLDING, 0, 1),
        ReadBlock(Table.HOLDING, 3, 1),
    ]


def test_plan_handles_overlaps_and_duplicates() -> None:
    plan = plan_reads([addr("holding:100:uint32"), addr("holding:101"), addr("holding:100")])
    assert plan == [ReadBlock(Table.HOLDING, 100, 2)]


def test_plan_respects_the_modbus_limits() -> None:
    registers = [addr(f"holding:{i}") for i in range(300)]
    plan = plan_reads(registers)
    assert all(b.count <= MAX_READ_REGISTERS for b in plan)
    assert [b.count for b in plan] == [125, 125, 50]
    bits = [addr(f"coil:{i}") for i in range(0, 4500, 3)]
    assert all(b.count <= MAX_READ_BITS for b in plan_reads(bits))
    both = plan_reads(registers + bits)
    for a in registers + bits:
        assert sum(b.covers(a) for b in both) == 1


def test_plan_empty() -> None:
    assert plan_reads([]) == []


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    trigger: RegisterSpec
    quantity: RegisterSpec | None = None


def test_register_spec_in_pydantic_models() -> None:
    config = _Config.model_validate({"trigger": "coil:0", "quantity": "holding:100:uint32"})
    assert config.trigger == addr("coil:0")
    assert config.model_dump() == {"trigger": "coil:0", "quantity": "holding:100:uint32"}
    assert _Config.model_validate_json(config.model_dump_json()) == config
    assert _Config.model_json_schema()["properties"]["trigger"]["type"] == "string"
    on_register = _Config.model_validate({"trigger": "holding:1:bool"})  # the contract's TYPEs
    assert on_register.trigger == addr("holding:1:bool")
    with pytest.raises(ValidationError, match="is a string like"):
        _Config.model_validate({"trigger": 5})


def test_bool_in_a_register_is_zero_or_one() -> None:
    """CONTRACTS.md lists bool among every table's TYPEs: a whole word holding 0 or 1."""
    flag = addr("holding:7:bool")
    assert (flag.width, flag.info.kind, flag.info.writable) == (1, ValueKind.BOOL, True)
    assert flag.decode([0]) is False
    assert flag.decode([1]) is True
    assert flag.decode([5]) is True  # a PLC that sets any non-zero value
    assert flag.encode(value=True) == [1]
    assert flag.encode(value=False) == [0]
    assert addr("input:3:bool").info.writable is False
