"""The GT2xx constants: distinct codes, all documented in the package docstring."""

import re

import pytest

import guardtrain.checking
from guardtrain.checking import codes
from guardtrain.core.codes import CODES


@pytest.mark.pure
def test_codes_are_distinct_gt2xx_and_documented():
    values = list(codes.ALL.values())
    assert len(values) == len(set(values)) >= 40
    assert all(re.fullmatch(r"GT2\d\d", v) for v in values)
    documented = set(re.findall(r"^  (GT2\d\d) ", guardtrain.checking.__doc__, re.M))
    # Besides the problems: the error's own code, and retired codes kept on the record.
    retired = {e.code for e in CODES if e.retired and e.code.startswith("GT2")}
    assert set(values) <= documented and documented - set(values) == {"GT200"} | retired


@pytest.mark.pure
def test_public_names():
    assert guardtrain.checking.__all__ == ["check", "CheckReport"]
