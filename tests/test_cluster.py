from __future__ import annotations

import pytest

from scheduler.domain import CapacityError, Cluster, Resources


def test_fractional_gpu_shares_pack_onto_the_fullest_gpu_that_fits(tiny):
    c = Cluster(tiny)
    gpu_node = c.index["green/gpu-0000"]
    assert c.allocate(gpu_node, Resources(100, 100, gpu_millis=600)) == (0,)
    # 300 fits next to 600 on GPU 0 (best fit), keeping GPU 1 whole
    assert c.allocate(gpu_node, Resources(100, 100, gpu_millis=300)) == (0,)
    # 500 no longer fits on GPU 0 (100 free)
    assert c.allocate(gpu_node, Resources(100, 100, gpu_millis=500)) == (1,)
    assert c.allocated(gpu_node) == Resources(300, 300, gpus=2, gpu_millis=1400)


def test_whole_gpus_need_fully_free_gpus(tiny):
    c = Cluster(tiny)
    n = c.index["green/gpu-0000"]
    c.allocate(n, Resources(100, 100, gpu_millis=1))
    assert not c.fits(n, Resources(100, 100, gpus=2))
    assert c.fits(n, Resources(100, 100, gpus=1))


def test_allocation_never_goes_over_capacity_and_release_restores(tiny):
    c = Cluster(tiny)
    n = c.index["near/cpu-0000"]
    r = Resources(3000, 1024)
    gpus = c.allocate(n, r)
    with pytest.raises(CapacityError):
        c.allocate(n, r)
    c.release(n, r, gpus)
    assert c.free_cpu[n] == 4000 and not c.awake[n]
    with pytest.raises(CapacityError):
        c.release(n, r, gpus)


def test_copy_is_independent(tiny):
    c = Cluster(tiny)
    d = c.copy()
    d.allocate(0, Resources(1000, 1000))
    assert c.free_cpu[0] == 4000 and d.free_cpu[0] == 3000


def test_allocate_many_takes_all_or_nothing_and_undo_gives_it_back(tiny):
    c = Cluster(tiny)
    node = c.index["near/cpu-0000"]  # 4 cores, 8 GiB
    mark = c.mark()
    c.allocate_many(node, Resources(1000, 1024), 3)
    assert (int(c.free_cpu[node]), int(c.replicas_on[node])) == (1000, 3)
    with pytest.raises(CapacityError):
        c.allocate_many(node, Resources(1000, 1024), 2)  # one fits, two do not: none taken
    assert (int(c.free_cpu[node]), int(c.replicas_on[node])) == (1000, 3)
    with pytest.raises(ValueError):
        c.allocate_many(node, Resources(100, 64, gpu_millis=100), 1)
    c.undo_to(mark)
    assert (int(c.free_cpu[node]), int(c.replicas_on[node])) == (4000, 0)
