"""SLA strings: parsing, one-line errors, feasibility and slack."""

from __future__ import annotations

import math

import pytest

from dynamo_bench.errors import SpecError
from dynamo_bench.specs import Metrics, parse_sla


def test_parse_and_evaluate() -> None:
    sla = parse_sla("ttft_ms.p90<=500, itl_ms.p99 <= 25 ,output_tok_s_per_gpu>=100")
    assert [c.key for c in sla.constraints] == ["ttft_ms_p90", "itl_ms_p99",
                                                "output_tok_s_per_gpu"]
    good = Metrics(ttft_ms_p90=400, itl_ms_p99=20, output_tok_s_per_gpu=150)
    assert sla.feasible(good)
    assert sla.slack(good) == pytest.approx([-0.2, -0.2, -0.5])
    bad = Metrics(ttft_ms_p90=600, itl_ms_p99=20, output_tok_s_per_gpu=50)
    assert not sla.feasible(bad)
    assert [str(c) for c in sla.violated(bad)] == ["ttft_ms.p90<=500", "output_tok_s_per_gpu>=100"]
    assert sla.slack(bad)[0] == pytest.approx(0.2)
    missing = Metrics(itl_ms_p99=20, output_tok_s_per_gpu=150)
    assert math.isinf(sla.slack(missing)[0]) and not sla.feasible(missing)
    assert str(sla) == "ttft_ms.p90<=500,itl_ms.p99<=25,output_tok_s_per_gpu>=100"


@pytest.mark.parametrize(("text", "fragment"), [
    ("latency_ms.p90<=5", "unknown metric 'latency_ms'"),
    ("ttft_ms.p42<=5", "unknown statistic 'p42'"),
    ("ttft_ms<=5", "ttft_ms needs a statistic"),
    ("output_tok_s.p90>=5", "output_tok_s has no statistic"),
    ("ttft_ms.p90<=-5", "must be >= 0"),
    ("ttft_ms.p90 = 5", "is not a constraint"),
    ("", "is empty"),
    ("ttft_ms.p90<=abc", "is not a constraint"),
])
def test_bad_sla_is_one_line(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_sla(text, field="--sla")
    assert fragment in str(info.value)
    assert str(info.value).startswith("--sla: ")
    assert "\n" not in str(info.value)
