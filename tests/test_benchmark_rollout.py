"""The rollout benchmark's pieces: its manifests validate as the server would, failures are recognised."""

from __future__ import annotations

import orjson

from benchmarks import rollout
from kubeling.api.kubeling_kinds import validate_rollout_plan


def test_manifests_are_a_daemonset_and_a_valid_four_step_plan() -> None:
    ds, plan = (orjson.loads(doc) for doc in rollout.manifests())
    assert ds["kind"] == "DaemonSet" and rollout.image(ds) == rollout.GOOD
    assert [s["nodes"] for s in plan["spec"]["steps"]] == ["10%", "30%", "50%", "100%"]
    assert not any("pause" in s for s in plan["spec"]["steps"])
    assert plan["spec"]["failurePolicy"]["action"] == "Rollback"
    assert validate_rollout_plan(plan) == []
    assert rollout.BROKEN.split(":", 1)[1].startswith("broken")


def test_pull_failures_are_recognised() -> None:
    def pod(reason: str) -> dict:
        return {"status": {"containerStatuses": [{"state": {"waiting": {"reason": reason}}}]}}

    assert rollout.pull_failed(pod("ErrImagePull")) and rollout.pull_failed(pod("ImagePullBackOff"))
    assert not rollout.pull_failed(pod("ContainerCreating")) and not rollout.pull_failed({})
