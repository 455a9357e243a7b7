"""One level-triggered decision for a RolloutPlan, as a pure function of what the API shows.

``decide`` takes the plan (spec, annotations and the status it last wrote), the DaemonSet's
current revision hash and generation, and an :class:`~observe.Observation` of the nodes, and
returns the next status, the events to emit and whether to roll the DaemonSet back. Every bit of
state lives in the plan's status (step, pause start, stable and update revisions, rollback
generation) or annotations (promote, abort), so a restarted controller picks up where it was.

Phases: Progressing (a step is rolling), Paused (a step's pause, or ``spec.paused``), Succeeded
(the update revision reached 100% and became stable), RolledBack (the template went back to the
stable revision), Failed (failures with ``action: Pause``: frozen until promoted or aborted).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from kubeling.api.kubeling_kinds import ABORT_ANNOTATION, PROMOTE_ANNOTATION, parse_duration
from kubeling.api.timeutil import format_rfc3339, parse_rfc3339
from kubeling.controllers.rollout import steps
from kubeling.controllers.rollout.observe import AVAILABLE, Observation

Obj = dict[str, Any]
WHY_LIMIT = 100


@dataclass
class Decision:
    status: Obj
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message) on plan and DS
    rollback: str | None = None  # change-cause when the DaemonSet must go back to the stable revision
    requeue_after: float | None = None

    def requeue(self, seconds: float) -> None:
        seconds = max(seconds, 0.05)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds


def _ts(now: float) -> str:
    from datetime import UTC, datetime

    return format_rfc3339(datetime.fromtimestamp(now, UTC))


def _seconds(text: str | None) -> float | None:
    t = parse_rfc3339(text) if text else None
    return t.timestamp() if t else None


def set_condition(status: Obj, type_: str, value: str, reason: str, message: str, now: float) -> None:
    conds = status.setdefault("conditions", [])
    for c in conds:
        if c.get("type") == type_:
            if c.get("status") != value:
                c["lastTransitionTime"] = _ts(now)
            if (c.get("status"), c.get("reason"), c.get("message")) != (value, reason, message):
                c["lastUpdateTime"] = _ts(now)
            c.update(status=value, reason=reason, message=message)
            return
    conds.append({"type": type_, "status": value, "reason": reason, "message": message,
                  "lastTransitionTime": _ts(now), "lastUpdateTime": _ts(now)})


def _promoted(plan: Obj, update: str, step: int) -> tuple[bool, bool]:
    """(this step promoted, promoted to the end) from the promote annotation."""
    value = ((plan.get("metadata") or {}).get("annotations") or {}).get(PROMOTE_ANNOTATION, "")
    rev, _, what = value.partition("/")
    if rev != update:
        return False, False
    if what == "full":
        return True, True
    try:
        return int(what) >= step, False
    except ValueError:
        return False, False


def decide(plan: Obj, *, update_hash: str, ds_generation: int, obs: Observation, now: float) -> Decision:
    """The next status of ``plan`` for DaemonSet revision ``update_hash`` (see module docstring)."""
    old = plan.get("status") or {}
    st = copy.deepcopy(old)
    d = Decision(st)
    spec = plan.get("spec") or {}
    all_steps = steps.steps_of(plan)
    last = len(all_steps) - 1
    eligible = len(obs.order)
    st["observedGeneration"] = (plan.get("metadata") or {}).get("generation") or 0
    st["eligibleNodes"] = eligible
    st["updatedNodes"] = len(obs.updated)
    st["availableUpdatedNodes"] = len(obs.available_updated)
    st["failedNodes"] = [{"name": n, "reason": r, "message": m} for n, (r, m) in sorted(obs.failed.items())][:WHY_LIMIT]
    problems = [r for r in obs.reasons if r.eligible and r.reason != AVAILABLE]
    st["why"] = [r.as_dict() for r in problems[:WHY_LIMIT]]

    def event(type_: str, reason: str, message: str) -> None:
        d.events.append((type_, reason, message))

    stable = st.get("stableRevision")
    if not stable:
        # a plan meeting its DaemonSet takes the current revision as the stable one
        st.update(stableRevision=update_hash, updateRevision=update_hash, currentStep=last, phase="Succeeded",
                  message=f"revision {update_hash} is stable", allowedNodes=eligible)
        set_condition(st, "Progressing", "True", "NewRevisionStable", st["message"], now)
        return d
    if update_hash == stable:
        st["allowedNodes"] = eligible
        st["currentStep"] = last
        abandoned = st.get("updateRevision")
        if not abandoned or abandoned == stable:
            st["updateRevision"] = stable
            if st.get("phase") != "Succeeded":
                st["phase"], st["message"] = "Succeeded", f"revision {stable} is stable"
                set_condition(st, "Progressing", "True", "NewRevisionStable", st["message"], now)
        elif st.get("phase") != "RolledBack":
            # The template is back on the stable revision before the update revision reached 100%:
            # a rollback whose RolledBack status write was lost (a conflict after the DaemonSet patch,
            # a restart in between) or a manual `kubectl rollout undo`. Either way the rollout of
            # the update revision did not succeed; RolledBack lasts until the template changes again.
            st["phase"] = "RolledBack"
            st["message"] = (f"rolled back to revision {stable}: the template returned to the stable revision "
                             f"before revision {abandoned} completed")
            st.pop("pauseStartTime", None)
            set_condition(st, "Progressing", "False", "RolledBack", st["message"], now)
            event("Warning", "RolledBack", st["message"])
        return d
    if (st.get("phase") == "RolledBack" and st.get("updateRevision") == update_hash
            and ds_generation <= int(st.get("rollbackGeneration") or 0)):
        return d  # our own rollback is not visible yet
    if st.get("updateRevision") != update_hash or st.get("phase") == "RolledBack":
        st.update(updateRevision=update_hash, currentStep=0, stepStartTime=_ts(now), phase="Progressing",
                  message=f"rolling out revision {update_hash}")
        st.pop("pauseStartTime", None)
        set_condition(st, "Progressing", "True", "RolloutStarted", st["message"], now)
        event("Normal", "RolloutStarted", f"Rolling out revision {update_hash} (stable {stable}) in "
                                          f"{len(all_steps)} step(s)")
        return d  # the DaemonSet controller waits for this acknowledgement
    step = min(int(st.get("currentStep") or 0), last)
    count = steps.step_count(plan, step, eligible=eligible, canaries=obs.canaries)
    st["allowedNodes"] = count
    step_name = f"step {step + 1}/{len(all_steps)}"

    # abort and failures come first
    if ((plan.get("metadata") or {}).get("annotations") or {}).get(ABORT_ANNOTATION) == update_hash:
        return _rollback(d, st, f"rollout of revision {update_hash} aborted", "Aborted", now)
    policy = spec.get("failurePolicy") or {}
    action = policy.get("action") or "Rollback"
    deadline = float(policy.get("progressDeadlineSeconds") or 600)
    limit = steps.max_failed(plan, eligible)
    promoted, full = _promoted(plan, update_hash, step)
    failure = None
    if len(obs.failed) > limit:
        sample = ", ".join(f"{n} ({r})" for n, (r, _) in sorted(obs.failed.items())[:5])
        failure = ("FailureThresholdExceeded",
                   f"{len(obs.failed)} updated node(s) failed, more than maxFailedNodes {limit}: {sample}")
    progress = (len(obs.updated), len(obs.available_updated), step)
    previous = (old.get("updatedNodes"), old.get("availableUpdatedNodes"), old.get("currentStep"))
    if progress != previous or not st.get("lastProgressTime"):
        st["lastProgressTime"] = _ts(now)
    step_done = obs.available_updated.issuperset(obs.order[:count])
    paused_now = st.get("phase") == "Paused" or bool(spec.get("paused"))
    if failure is None and not step_done and not paused_now:
        since = _seconds(st.get("lastProgressTime")) or now
        if now - since > deadline:
            failure = ("ProgressDeadlineExceeded", f"{step_name} made no progress for {int(deadline)}s")
        else:
            d.requeue(since + deadline - now + 0.5)
    if st.get("phase") == "Failed" and not promoted:
        return d
    if failure is not None and not (st.get("phase") == "Failed" and promoted):
        if action == "Rollback":
            return _rollback(d, st, failure[1], failure[0], now)
        st["phase"], st["message"] = "Failed", failure[1]
        set_condition(st, "Progressing", "False", failure[0], failure[1], now)
        event("Warning", failure[0], f"Rollout paused: {failure[1]}")
        return d
    if spec.get("paused") and not full:
        if st.get("phase") != "Paused":
            st["phase"], st["message"] = "Paused", f"paused at {step_name} by spec.paused"
            st.setdefault("pauseStartTime", _ts(now))
            set_condition(st, "Progressing", "Unknown", "Paused", st["message"], now)
            event("Normal", "RolloutPaused", f"Rollout paused at {step_name}")
        return d
    if full and step < last:
        return _advance(d, st, last, f"promoted to the last step (from {step_name})", "Promoted", now)
    if not step_done:
        if st.get("phase") != "Progressing":
            st["phase"] = "Progressing"
            set_condition(st, "Progressing", "True", "Resumed", f"resumed at {step_name}", now)
        st["message"] = (f"{step_name}: {len(obs.available_updated)} of {count} node(s) updated and available "
                         f"({eligible} eligible)")
        return d
    if step == last:
        st.update(stableRevision=update_hash, phase="Succeeded", message=f"revision {update_hash} is stable")
        st.pop("pauseStartTime", None)
        set_condition(st, "Progressing", "True", "NewRevisionStable", st["message"], now)
        event("Normal", "RolloutSucceeded", f"Revision {update_hash} rolled out to all {eligible} node(s)")
        return d
    pause = all_steps[step].get("pause")
    if pause is not None and not promoted:
        started = _seconds(st.get("pauseStartTime"))
        if started is None:
            st["pauseStartTime"] = _ts(now)
            started = now
            event("Normal", "StepPaused", f"{step_name} complete ({count} node(s)); paused"
                  + (f" for {pause['duration']}" if pause.get("duration") else " until promoted"))
        if pause.get("duration"):
            remaining = started + parse_duration(pause["duration"]) - now
            if remaining > 0:
                st["phase"] = "Paused"
                st["message"] = f"{step_name} complete; paused for {pause['duration']}"
                set_condition(st, "Progressing", "Unknown", "StepPaused", st["message"], now)
                d.requeue(remaining)
                return d
        else:
            st["phase"] = "Paused"
            st["message"] = f"{step_name} complete; waiting for kubeling rollout promote"
            set_condition(st, "Progressing", "Unknown", "StepPaused", st["message"], now)
            return d
    return _advance(d, st, step + 1, f"{step_name} complete", "StepCompleted", now)


def _advance(d: Decision, st: Obj, step: int, why: str, reason: str, now: float) -> Decision:
    st.update(currentStep=step, stepStartTime=_ts(now), phase="Progressing", lastProgressTime=_ts(now))
    st.pop("pauseStartTime", None)
    st["message"] = f"{why}; moving to step {step + 1}"
    set_condition(st, "Progressing", "True", reason, st["message"], now)
    d.events.append(("Normal", reason, st["message"]))
    return d


def _rollback(d: Decision, st: Obj, message: str, reason: str, now: float) -> Decision:
    st["phase"] = "RolledBack"
    st["message"] = f"rolled back to revision {st.get('stableRevision')}: {message}"
    set_condition(st, "Progressing", "False", reason, st["message"], now)
    d.events.append(("Warning", reason, f"Rolling back to stable revision {st.get('stableRevision')}: {message}"))
    d.rollback = f"kubeling rollout: {reason}: {message}"
    return d
