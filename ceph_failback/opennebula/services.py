"""OneFlow services as oned stores them: documents whose body lists the roles and their VMs.

OneFlow keeps each service as an oned document (``one.documentpool.info``, type
:data:`SERVICE_DOCUMENT`), its ``TEMPLATE/BODY`` a JSON text with the service's roles, each role's
parent roles and its VMs (``nodes``, each with the VM's ``deploy_id``). The failback reads them
for its start order (:mod:`ceph_failback.failback.order`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from xml.etree import ElementTree

from ..errors import OpenNebulaError

__all__ = ["Service", "Role", "SERVICE_DOCUMENT", "services_from"]

#: oned's document type of a OneFlow service.
SERVICE_DOCUMENT = 100


@dataclass(frozen=True)
class Role:
    """One role of a service: its name, the roles it starts after, and its VMs (ids)."""

    name: str
    parents: tuple[str, ...] = ()
    vms: tuple[int, ...] = ()


@dataclass(frozen=True)
class Service:
    """A OneFlow service.

    Attributes:
        id: the document's id.
        name: the service's name.
        roles: its roles.
        ordered: deployed ``straight`` (a role after its parents); ``False`` for ``none``
            (every role at once).
        ready: ``ready_status_gate``: OneFlow counts a VM deployed once its guest reports
            ``READY=YES`` through OneGate, not once it runs.
    """

    id: int
    name: str
    roles: tuple[Role, ...]
    ordered: bool = True
    ready: bool = False


def services_from(text: str, *, site: str) -> list[Service]:
    """The services of a ``<DOCUMENT_POOL>`` answer (``one.documentpool.info``), from each
    document's ``TEMPLATE/BODY`` (JSON): roles, their ``parents``, their VMs (each node's
    ``deploy_id``), and ``deployment`` (``straight``: ordered; anything else, OneFlow's
    default ``none``: not).

    Raises:
        OpenNebulaError: the answer is not XML, or a service's body cannot be read (naming
            the document).
    """
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise OpenNebulaError(f"oned's document listing is not XML: {exc}", site=site) from exc
    services = []
    for doc in root.iter("DOCUMENT"):
        doc_id = int(doc.findtext("ID") or -1)
        name = doc.findtext("NAME") or f"document-{doc_id}"
        try:
            body = json.loads(doc.findtext("TEMPLATE/BODY") or "")
            roles = tuple(Role(str(r["name"]), tuple(str(p) for p in r.get("parents") or ()),
                               tuple(int(n["deploy_id"]) for n in r.get("nodes") or ()
                                     if n.get("deploy_id") is not None))
                          for r in body.get("roles") or ())
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise OpenNebulaError(
                f"OneFlow service {name!r} (document {doc_id}) has a body that is not a "
                f"service's JSON ({type(exc).__name__}: {exc})", site=site,
                hint="check it with 'oneflow show'") from exc
        services.append(Service(doc_id, str(body.get("name") or name), roles,
                                ordered=body.get("deployment") == "straight",
                                ready=body.get("ready_status_gate") is True))
    return services
