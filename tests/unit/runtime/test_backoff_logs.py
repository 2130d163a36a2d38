import logging
import random

from edge_agent.logs import KeyValueFormatter, RateLimitFilter
from edge_agent.runtime.backoff import Backoff


def test_backoff_is_capped_jittered_and_resets():
    b = Backoff(0.5, 8.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(10)]
    for i, d in enumerate(delays):
        base = min(8.0, 0.5 * 2**i)
        assert base * 0.5 <= d <= base
    assert max(delays) <= 8.0
    b.reset()
    assert b.next_delay() <= 0.5


def _rec(msg="device failed"):
    return logging.LogRecord("axedge.x", logging.WARNING, __file__, 1, msg, (), None)


def test_rate_limit_filter_holds_back_and_reports():
    t = [0.0]
    f = RateLimitFilter(burst=3, window_secs=10, clock=lambda: t[0])
    passed = [f.filter(_rec()) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert f.filter(_rec("other message"))
    t[0] = 11
    r = _rec()
    assert f.filter(r)
    assert r.suppressed == 7


def test_key_value_formatter_includes_extras():
    r = _rec()
    r.device = "press1"
    line = KeyValueFormatter().format(r)
    assert 'msg="device failed"' in line and 'device="press1"' in line and "level=warning" in line
