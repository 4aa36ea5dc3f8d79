"""The cloud seam: what the orchestrator needs from one site's OpenNebula, as a Protocol.

:class:`~ceph_failback.opennebula.OpenNebulaSite` (XML-RPC through pyone) satisfies it; tests
give the orchestrator that same class against the oned stand-in
(:class:`ceph_failback.lab.oned.OnedStandIn`), which models oned's VM lifecycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from .records import VM
from .services import Service

__all__ = ["CloudSite"]


@runtime_checkable
class CloudSite(Protocol):
    """One site's VMs: reads and the two actions a failback makes."""

    @property
    def name(self) -> str: ...
    @property
    def endpoint(self) -> str: ...
    def vms(self, *, state: str | None = None, include_done: bool = False) -> list[VM]: ...
    def vm(self, vm_id: int | VM) -> VM: ...
    def vms_by_id(self, ids: Iterable[int]) -> list[VM]: ...
    def services(self) -> list[Service]: ...
    def terminate(self, vm: int | VM, *, hard_after: float | None = None,
                  timeout: float = 600.0) -> VM: ...
    def resume(self, vm: int | VM, *, timeout: float = 600.0) -> VM: ...
    def update_user_template(self, vm: int | VM, text: str, *, merge: bool = True) -> None: ...
    def wait_ready(self, vm: int | VM, *, timeout: float = 600.0) -> VM: ...
