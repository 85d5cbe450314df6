"""Fixtures of the run tests."""

import pytest
from small_plan import small_plan_dict

from romanflow.run.plan import plan_from_dict


@pytest.fixture
def small_plan():
    return plan_from_dict(small_plan_dict(), source="small-plan")
