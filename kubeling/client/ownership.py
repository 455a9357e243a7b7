"""Who controls an object, as upstream's metav1.GetControllerOf, and the informer indexes of it that
controllers share.

In a shared informer an index name means one thing to every controller (the first registration
wins), so controllers that look objects up by their controller's uid, or find orphans to adopt by
namespace, register these same names and functions: each object event is indexed once per meaning,
not once per controller. A uid names one object of one kind, so the DaemonSet controller, the
StatefulSet controller and the rollout controller can all ask the same index.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

CONTROLLER_UID_INDEX = "controller-uid"  # the uid of the object's controller (none: not indexed)
ORPHAN_INDEX = "orphan-namespace"  # the namespace of an object without a controller


def controller_ref(obj: Obj) -> Obj | None:
    """The ownerReference with controller: true, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def controller_uid(obj: Obj) -> list[str]:
    ref = controller_ref(obj)
    return [ref["uid"]] if ref and ref.get("uid") else []


def orphan_namespace(obj: Obj) -> list[str]:
    return [] if controller_ref(obj) else [(obj.get("metadata") or {}).get("namespace") or ""]


INDEXERS = {CONTROLLER_UID_INDEX: controller_uid, ORPHAN_INDEX: orphan_namespace}
