from dvp.consumers.offsets import OffsetTracker


def test_only_the_acknowledged_prefix_is_committable():
    t = OffsetTracker()
    for offset in (10, 11, 12):
        t.started("frames", 0, offset)
    t.done("frames", 0, 11)
    assert t.committable() == {}
    t.done("frames", 0, 10)
    assert t.committable() == {("frames", 0): 12}
    assert t.committable() == {}
    t.done("frames", 0, 12)
    assert t.committable() == {("frames", 0): 13}
    assert t.committable() == {}


def test_partitions_advance_independently():
    t = OffsetTracker()
    t.started("frames", 0, 5)
    t.started("frames", 1, 7)
    t.done("frames", 1, 7)
    assert t.committable() == {("frames", 1): 8}
    t.forget("frames", 0)
    t.done("frames", 0, 5)  # a revoked partition's late delivery commits nothing
    assert t.committable() == {}
