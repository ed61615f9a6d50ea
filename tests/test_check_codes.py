"""The GT2xx code table: distinct codes, all documented in the package docstring."""

import re

import pytest

import guardtrain.checking
from guardtrain.checking import codes


@pytest.mark.pure
def test_codes_are_distinct_gt2xx_and_documented():
    values = list(codes.ALL.values())
    assert len(values) == len(set(values)) >= 40
    assert all(re.fullmatch(r"GT2\d\d", v) for v in values)
    documented = set(re.findall(r"^  (GT2\d\d) ", guardtrain.checking.__doc__, re.M))
    assert set(values) <= documented and documented - set(values) == {"GT200"}


@pytest.mark.pure
def test_public_names():
    assert guardtrain.checking.__all__ == ["check", "CheckReport"]
