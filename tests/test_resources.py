"""Job resources come from one place (medverify.resources) and reach the verify rule."""

from medverify.resources import verify_job


def test_resources_grow_with_need():
    small = verify_job("crown", "linf", 784, 120)
    assert small.mem_mb >= 2000 and small.runtime_min == 2 + 2
    heavy = verify_job("marabou", "brightness", 784, 120)
    assert heavy.mem_mb > verify_job("marabou", "linf", 784, 120).mem_mb > small.mem_mb
    assert verify_job("marabou", "brightness", 3 * 784, 120).mem_mb > heavy.mem_mb
    assert verify_job("crown", "linf", 784, 1).runtime_min == 3
    assert all(verify_job(v, "contrast", 784, 5).mem_mb % 100 == 0 for v in ("exact", "milp"))
