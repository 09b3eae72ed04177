"""Numbers as text are read in plain ASCII decimal notation only."""

from __future__ import annotations

import pytest

from locstream.strict_numbers import decimal, whole


@pytest.mark.parametrize(("text", "number"), [("6.5", 6.5), ("-3", -3.0), ("+.5", 0.5), ("7.", 7.0), ("1e3", 1000.0)])
def test_decimal_notation_reads_as_python_would(text: str, number: float) -> None:
    assert decimal(text) == number


@pytest.mark.parametrize(
    "text",
    [
        "6_5",
        "\u0666",
        "\uff11\uff12",
        "nan",
        "inf",
        "-Infinity",
        "1e999",
        "0x10",
        "1,5",
        " 6.5",
        "6.5\n",
        "",
        ".",
        "e3",
        "--1",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        decimal(text)


def test_whole_numbers_are_ascii_digits_with_an_optional_sign() -> None:
    assert whole("-12") == -12 and whole("+7") == 7
    for text in ("1_0", "\u0661\u0662", "1.0", "1e2", "", "9" * 19):
        with pytest.raises(ValueError):
            whole(text)
