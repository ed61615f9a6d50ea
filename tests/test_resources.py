"""The one resource comparison (guardtrain.core.resources): pure, no Ray, one code per
fault (GT420 CPUs, GT421 GPUs, GT422 no node fits a worker)."""

import pickle

import pytest

from guardtrain.core.errors import LaunchError
from guardtrain.core.launch_config import LaunchConfig
from guardtrain.core.resources import check_resources, resource_error

pytestmark = pytest.mark.pure


def test_one_code_per_fault_and_both_faults_at_once():
    launch = LaunchConfig(workers=3, gpus_per_worker=1)
    problems = check_resources(launch, {"CPU": 2.0})
    assert [p.code for p in problems] == ["GT421", "GT420"]
    assert all(p.where == "LaunchConfig(workers=3, cpus_per_worker=1, gpus_per_worker=1)"
               for p in problems)


def test_fewer_gpus_than_asked_names_how_many_workers_fit():
    [p] = check_resources(LaunchConfig(workers=4, gpus_per_worker=1),
                          [{"CPU": 8, "GPU": 2}, {"CPU": 8, "GPU": 1}])
    assert p.code == "GT421" and p.found == "3 GPUs in the Ray cluster"
    assert "workers=3" in p.fix


def test_per_node_fit_only_with_per_node_resources():
    launch = LaunchConfig(workers=2, cpus_per_worker=1.5)
    assert check_resources(launch, {"CPU": 3.0}) == []      # totals: read as one node
    [p] = check_resources(launch, [{"CPU": 2.0}, {"CPU": 1.0}])
    assert p.code == "GT422" and "room for 1" in p.found


def test_fractional_requests_round_safely():
    assert check_resources(LaunchConfig(workers=10, cpus_per_worker=0.1), {"CPU": 1.0}) == []


def test_resource_error_lists_every_problem_and_pickles():
    problems = check_resources(LaunchConfig(workers=3, gpus_per_worker=1), {"CPU": 2.0})
    err = resource_error(problems)
    assert isinstance(err, LaunchError) and err.code == "GT421"
    assert "[GT421]" in str(err) and "[GT420]" in str(err) and "Fix:" in str(err)
    assert err.details["problems"] == problems
    back = pickle.loads(pickle.dumps(err))
    assert (back.code, str(back)) == (err.code, str(err))
