"""Reading a site's pools: its VMs (in pages), VMs by id, and its OneFlow services.

:class:`PoolReader` is the half of :class:`~ceph_failback.opennebula.OpenNebulaSite` that lists;
the other half (in :mod:`.site`) reads one VM and acts on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from xml.etree import ElementTree

import pyone

from ..errors import ConfigurationError, OpenNebulaError
from .records import VM, pool_vms
from .services import SERVICE_DOCUMENT, Service, services_from

__all__ = ["PoolReader"]

# one.vmpool.info* state filter values (include/VirtualMachinePool.h: ALL_VM, NOT_DONE).
_ALL_BUT_DONE = -1
_ALL = -2


class PoolReader:
    """Pool listings over a site's XML-RPC calls (``_call``, given by the site)."""

    _name: str

    def _call(self, method: str, *params: Any, what: str, vm: int | None = None,
              xml: bool = False) -> Any:
        raise NotImplementedError

    def vms(self, *, state: str | None = None, include_done: bool = False) -> list[VM]:
        """The VMs of the site with their disks (``one.vmpool.infoextended``), newest first.

        Args:
            state: only VMs in this state (a ``pyone.VM_STATE`` name, e.g. ``"POWEROFF"``).
            include_done: also list terminated (DONE) VMs; by default they are left out, as
                oned does with filter -1. Ignored when ``state`` is given.

        The short ``one.vmpool.info`` is not used: it drops ``SOURCE`` and ``POOL_NAME`` from
        disks, without which the RBD images cannot be named.
        """
        if state is not None:
            try:
                state_filter = int(pyone.VM_STATE[state.upper()])
            except KeyError:
                raise ConfigurationError(
                    f"unknown VM state {state!r}; use one of "
                    + ", ".join(s.name for s in pyone.VM_STATE),
                    site=self._name,
                ) from None
        else:
            state_filter = _ALL if include_done else _ALL_BUT_DONE
        return self._paged(state_filter)

    #: VMs per page of :meth:`vms` (oned's answer for 1,000 VMs: 4.6 MB of XML, ~30 MB of tree).
    page_ids: int = 1000
    #: The widest id window of a page (where ids are sparse): a page holds at most this many VMs.
    widest_page: int = 8000

    def _paged(self, state_filter: int) -> list[VM]:
        """Every VM the user may see (filter -2) in ``state_filter``, newest first: the newest
        :attr:`page_ids` VMs (offset 0, ``end < -1``, in the user's ``API_LIST_ORDER``), then
        windows of ids below them (``oid >= start AND oid <= end``), not offsets (a VM ending
        between pages would shift an offset page and hide another). A smaller pool is one
        call; one listed oldest first is read whole by a second call. VMs created after the
        first page are not listed. Each window is sized from the density of ids the last page
        found, to hold about :attr:`page_ids` VMs: at most twice the last width and
        :attr:`widest_page` ids (so at most that many VMs per answer)."""
        what = "list the VMs"
        size = max(2, self.page_ids)  # end -1 would be an id range, not a page of one
        first = self._listing("vmpool.infoextended", -2, 0, -size, state_filter, what=what)
        if len(first) < size:
            return sorted(first, key=lambda vm: vm.id, reverse=True)
        if any(a.id <= b.id for a, b in zip(first, first[1:], strict=False)):
            # Listed oldest first: the first page says nothing of the rest.
            every = self._listing("vmpool.infoextended", -2, -1, -1, state_filter, what=what)
            return sorted(every, key=lambda vm: vm.id, reverse=True)
        vms: list[VM] = list(first)
        high = first[-1].id - 1
        width = max(1, min(first[0].id - first[-1].id + 1, self.widest_page))
        while high >= 0:
            low = max(0, high - width + 1)
            page = self._listing("vmpool.infoextended", -2, low, high, state_filter,
                                 what=f"list the VMs with ids {low}-{high}")
            vms.extend(sorted(page, key=lambda vm: vm.id, reverse=True))
            high = low - 1
            # About page_ids VMs at the density just seen; never more than twice as wide.
            wanted = size * width // max(len(page), 1)
            width = max(1, min(wanted, 2 * width, self.widest_page))
        return vms

    def _listing(self, method: str, *params: Any, what: str) -> list[VM]:
        """The VMs of a pool listing (``<VM_POOL>``), read with ElementTree."""
        text = self._call(method, *params, what=what, xml=True)
        try:
            # A disk whose image cannot be named is in the record's ``unreadable``: one odd VM
            # does not fail the whole listing, and the mapping blocks that VM.
            return pool_vms(text)
        except ElementTree.ParseError as exc:
            raise OpenNebulaError(f"oned's VM listing is not XML: {exc}", site=self._name) from exc

    def vms_by_id(self, ids: Iterable[int]) -> list[VM]:
        """The VMs with these ids, in any state (DONE included), newest first, in one call
        (``one.vmpool.infoset``, extended): ids that do not exist, or that the user may not see,
        are left out. No call for no ids.
        """
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return []
        return self._listing("vmpool.infoset", ",".join(map(str, wanted)), True,
                             what=f"read {len(wanted)} VMs by id")

    def services(self) -> list[Service]:
        """The OneFlow services the user may see (``one.documentpool.info``, documents of type
        :data:`~.services.SERVICE_DOCUMENT`), with their roles and VMs."""
        text = self._call("documentpool.info", -2, -1, -1, SERVICE_DOCUMENT,
                          what="list the OneFlow services", xml=True)
        return services_from(text, site=self._name)
