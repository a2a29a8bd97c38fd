import pytest

from autolrs._optional import require
from autolrs.errors import AutoLRSError, MissingDependencyError


def test_require_returns_the_module():
    assert require("math", "none", "test").sqrt(4.0) == 2.0


def test_a_missing_module_names_the_extra_and_is_an_import_error():
    with pytest.raises(
        MissingDependencyError, match=r"thing needs 'no_such_module_x'.*autolrs\[extra\]"
    ) as info:
        require("no_such_module_x", "extra", "thing")
    assert isinstance(info.value, AutoLRSError)
    assert isinstance(info.value, ImportError)
