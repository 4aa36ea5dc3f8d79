"""The start order (failback/order.py): groups from an explicit order and from OneFlow services,
their blockers, and a failback that follows them on in-memory sites (the oned stand-in models
OneFlow's service documents as oneflow-server stores them)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback.errors import OpenNebulaError, StepFailedError
from ceph_failback.failback.order import build_order
from ceph_failback.lab.oned import OnedStandIn
from ceph_failback.opennebula.mapping import Pair
from ceph_failback.opennebula.records import VM
from ceph_failback.opennebula.services import Role, Service, services_from
from ceph_failback.opennebula.site import OpenNebulaSite
from ceph_failback.testing import MemoryWorld

warnings.filterwarnings("ignore", module="requests")

NEW = b"written on B after the failover"


def pair(b: int, a: int, name: str) -> Pair:
    return Pair(VM(a, name, "POWEROFF"), VM(b, name, "ACTIVE", "RUNNING"), (f"one-{a}",))


PAIRS = [pair(20, 10, "db"), pair(21, 11, "app"), pair(22, 12, "lb"), pair(23, 13, "mail")]
WEB = Service(7, "web", (Role("db", (), (10,)), Role("app", ("db",), (11,)),
                         Role("lb", ("app",), (12,))))


def order_of(explicit=None, services=(), pairs=PAIRS, known=PAIRS):
    return build_order(pairs, known, explicit, services, site_a="site-a", site_b="site-b")


def test_oneflow_roles_start_after_their_parents() -> None:
    order, blockers = order_of(services=[WEB])
    assert not blockers
    assert [(g.name, g.vms, g.after) for g in order.groups] == [
        ("web/db", (20,), ()), ("web/app", (21,), ("web/db",)), ("web/lb", (22,), ("web/app",))]
    assert order.starts_after(22) == [21] and order.stops_after(20) == [21]
    assert order.group_of(23) is None and order.starts_after(23) == order.stops_after(23) == []
    start = [[p.vm_b.id for p in w] for w in order.waves(PAIRS)]
    stop = [[p.vm_b.id for p in w] for w in order.waves(PAIRS, stopping=True)]
    assert start == [[20, 23], [21], [22]] and stop == [[22, 23], [21], [20]]


def test_a_service_deployed_all_at_once_has_no_order() -> None:
    flat = Service(7, "web", WEB.roles, ordered=False)
    order, blockers = order_of(services=[flat])
    assert not blockers and not order and all(not g.after for g in order.groups)


def test_the_explicit_order_wins_and_names_vms_by_id_or_name() -> None:
    order, blockers = order_of([["lb"], [20, "app"]], [WEB])
    assert not blockers
    assert [(g.name, g.vms, g.after) for g in order.groups] == [
        ("group 1", (22,), ()), ("group 2", (20, 21), ("group 1",))]


def test_a_role_out_of_scope_passes_its_parents_on() -> None:
    # app is not failed back this time: lb still starts after db.
    order, _ = order_of(services=[WEB], pairs=[PAIRS[0], PAIRS[2]])
    assert [(g.name, g.after) for g in order.groups] == [("web/db", ()), ("web/lb", ("web/db",))]


@pytest.mark.parametrize(("explicit", "services", "kind", "target"), [
    ([["nosuch"]], [], "order-unknown-vm", "order:group 1"),
    ([[99]], [], "order-unknown-vm", "order:group 1"),
    ([["db"], [20]], [], "order-duplicate", "vm:site-b:20"),
    (None, [Service(3, "loop", (Role("x", ("y",), (10,)), Role("y", ("x",), (11,))))],
     "order-cycle", "order"),
    (None, [Service(3, "odd", (Role("x", ("nosuch",), (10,)),))], "order-unknown-role",
     "service:odd"),
])
def test_what_is_wrong_with_an_order_is_a_blocker_naming_it(explicit, services, kind,
                                                            target) -> None:
    _, blockers = order_of(explicit, services)
    assert [(b.kind, b.target) for b in blockers] == [(kind, target)]
    assert not blockers[0].waivable


def test_an_explicit_entry_out_of_scope_is_left_out_not_refused() -> None:
    # A configuration file's order for the whole site, and a failback of one VM.
    order, blockers = order_of([["db"], ["app"]], pairs=[PAIRS[1]])
    assert not blockers and [(g.name, g.after) for g in order.groups] == [("group 2", ())]


def test_the_stand_in_s_service_documents_read_back() -> None:
    with OnedStandIn(name="a") as oned:
        db, app, lb = (oned.add_vm(n) for n in ("db_0", "app_0", "lb_0"))
        oned.add_service("web", {"db": [db], "app": [app], "lb": [lb]},
                         parents={"app": ["db"], "lb": ["app"]})
        oned.add_service("flat", {"x": [db]}, deployment="none")
        site = OpenNebulaSite("site-a", oned.endpoint, credentials=oned.session, timeout=5)
        services = site.services()
    # Newest first (API_LIST_ORDER's default, DESC), as oned lists every pool.
    assert [s.name for s in services] == ["flat", "web"]
    assert services[1] == Service(0, "web", (Role("db", (), (db,)), Role("app", ("db",), (app,)),
                                             Role("lb", ("app",), (lb,))))
    assert not services[0].ordered


def test_oned_s_document_pool_as_written_by_oned() -> None:
    # PoolSQL::dump and Document::to_xml (OpenNebula 7.4): an empty pool is not self-closing,
    # the body is CDATA, the NAME comes out of the template.
    assert services_from("<DOCUMENT_POOL></DOCUMENT_POOL>", site="s") == []
    body = {"name": "web", "deployment": "straight", "roles": [
        {"name": "db", "type": "vm", "cardinality": 1, "nodes": [
            {"deploy_id": 10, "vm_info": {"VM": {"ID": "10", "NAME": "db_0_(service_7)"}}}]},
        {"name": "app", "type": "vm", "cardinality": 0, "parents": ["db"], "nodes": []}]}
    text = ("<DOCUMENT_POOL><DOCUMENT><ID>7</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>"
            "<GNAME>oneadmin</GNAME><NAME>web</NAME><TYPE>100</TYPE><PERMISSIONS><OWNER_U>1"
            "</OWNER_U></PERMISSIONS><TEMPLATE><BODY><![CDATA[" + json.dumps(body)
            + "]]></BODY></TEMPLATE></DOCUMENT></DOCUMENT_POOL>")
    assert services_from(text, site="s") == [
        Service(7, "web", (Role("db", (), (10,)), Role("app", ("db",), ())))]


@pytest.mark.parametrize("body", ["not json", '{"roles": [{"parents": []}]}', '{"roles": 3}'])
def test_a_service_body_that_cannot_be_read_names_the_document(body: str) -> None:
    text = (f"<DOCUMENT_POOL><DOCUMENT><ID>4</ID><NAME>web</NAME><TEMPLATE><BODY><![CDATA[{body}"
            "]]></BODY></TEMPLATE></DOCUMENT></DOCUMENT_POOL>")
    with pytest.raises(OpenNebulaError, match=r"service 'web' \(document 4\)"):
        services_from(text, site="site-a")


# --- a failback in the start order, on in-memory sites ------------------------------------


@pytest.fixture
def three_tier() -> Iterator[MemoryWorld]:
    with MemoryWorld() as world:
        for name in ("db", "app", "lb", "mail"):
            world.add_vm(name)
        db, app, lb, _ = world.vms
        world.oned_a.add_service("web", {"db": [db.vm_a], "app": [app.vm_a], "lb": [lb.vm_a]},
                                 parents={"app": ["db"], "lb": ["app"]})
        world.disaster("unplanned", new_data=NEW)
        yield world


def accepted(oned: OnedStandIn, action: str) -> list[int]:
    return [vm for vm, act, ok in oned.actions if ok and act == action]


@pytest.mark.parametrize("pipeline", [True, False])
def test_a_three_tier_service_stops_in_reverse_and_resumes_in_order(
        three_tier: MemoryWorld, tmp_path: Path, pipeline: bool) -> None:
    world = three_tier
    db, app, lb, mail = world.vms
    fb = world.failback(tmp_path / "j.jsonl")
    plan = fb.plan()
    assert plan.ok, plan
    assert [g.name for g in plan.order.groups] == ["web/db", "web/app", "web/lb"]
    report = fb.run(pipeline=pipeline)
    assert report.complete, report
    stops = [v for v in accepted(world.oned_b, "terminate") if v != mail.vm_b]
    resumes = [v for v in accepted(world.oned_a, "resume") if v != mail.vm_a]
    assert stops == [lb.vm_b, app.vm_b, db.vm_b]
    assert resumes == [db.vm_a, app.vm_a, lb.vm_a]
    # Each VM on B was DONE before the one before it in the order was terminated, and each VM
    # on A RUNNING before the next was resumed: the stand-ins' transition logs say when.
    for vm in (db, app, lb, mail):
        assert world.oned_a.vm_state(vm.vm_a) == ("ACTIVE", "RUNNING")
    # The report says the same, from the journal.
    stopped, started = report.order_followed()
    assert [v for v in stopped if v != mail.vm_b] == stops
    assert [v for v in started if v != mail.vm_a] == resumes
    assert {v.vm_b: v.group for v in report.vms} == {
        db.vm_b: "web/db", app.vm_b: "web/app", lb.vm_b: "web/lb", mail.vm_b: None}


def test_a_step_called_out_of_order_is_refused(three_tier: MemoryWorld, tmp_path: Path) -> None:
    world = three_tier
    db, app, lb, mail = world.vms
    fb = world.failback(tmp_path / "j.jsonl")
    fb.demote_site_a()
    fb.resync_site_a()
    with pytest.raises(StepFailedError) as info:
        fb.terminate_site_b(vms=[db.vm_b])  # app and lb still run on B
    assert "stops only after VMs" in str(info.value.failures) and str(app.vm_b) in str(
        info.value.failures)
    assert world.oned_b.vm_state(db.vm_b) == ("ACTIVE", "RUNNING")
    fb.terminate_site_b()  # all three, in reverse order
    fb.demote_site_b()
    fb.promote_site_a()
    with pytest.raises(StepFailedError) as info:
        fb.resume_site_a(vms=[lb.vm_b])  # db and app do not run on A yet
    assert "resumes only after VMs" in str(info.value.failures)
    assert world.oned_a.vm_state(lb.vm_a) == ("POWEROFF", "LCM_INIT")
    fb.resume_site_a()
    assert [v for v in accepted(world.oned_a, "resume") if v != mail.vm_a] == [
        db.vm_a, app.vm_a, lb.vm_a]


def test_an_explicit_order_error_blocks_the_plan(three_tier: MemoryWorld, tmp_path: Path) -> None:
    plan = three_tier.failback(tmp_path / "j.jsonl", order=[["db"], ["nosuch"]]).plan()
    assert [b.kind for b in plan.unwaived] == ["order-unknown-vm"]
    assert "'nosuch'" in plan.unwaived[0].message


def test_without_oneflow_there_is_no_order(three_tier: MemoryWorld, tmp_path: Path) -> None:
    fb = three_tier.failback(tmp_path / "j.jsonl", oneflow=False)
    assert not fb.plan().order.groups
    assert "one.documentpool.info" not in three_tier.oned_a.calls


def test_the_configuration_file_and_the_command_line_give_an_order(tmp_path: Path) -> None:
    from ceph_failback.cli_parser import build_parser
    from ceph_failback.config import load_config

    from .test_cli import write_config

    cfg = load_config(write_config(tmp_path, top='order = [["db-1", "db-2"], ["app", 17]]\n'
                                                 "oneflow = false"))
    assert cfg.order == (("db-1", "db-2"), ("app", 17)) and cfg.oneflow is False
    assert load_config(write_config(tmp_path)).order is None
    args = build_parser().parse_args(["plan", "--config", "x.toml", "--order", "db-1, 4",
                                      "--order", "lb", "--no-oneflow"])
    assert args.order == [("db-1", 4), ("lb",)] and args.no_oneflow


# --- readiness: OneGate's READY=YES ---------------------------------------------------------


@pytest.fixture
def gated() -> Iterator[MemoryWorld]:
    """db <- app with OneFlow's ready_status_gate; both guests report READY=YES at boot, and
    did before the disaster (a stale READY=YES sits in their user templates on A)."""
    with MemoryWorld() as world:
        for name in ("db", "app"):
            world.add_vm(name)
        db, app = world.vms
        world.oned_a.add_service("web", {"db": [db.vm_a], "app": [app.vm_a]},
                                 parents={"app": ["db"]}, ready_status_gate=True)
        for vm in (db, app):
            world.oned_a.guest_reports_ready(vm.vm_a, after=0.2)
        world.disaster("unplanned", new_data=NEW)
        yield world


def test_a_group_waits_for_its_guests_to_report_ready(gated: MemoryWorld, tmp_path: Path) -> None:
    world = gated
    db, app = world.vms
    one_a = world.site("a").one
    assert one_a.vm(db.vm_a).is_ready  # stale: reported before the disaster
    fb = world.failback(tmp_path / "j.jsonl")
    plan = fb.plan()
    assert plan.ok and [g.ready for g in plan.order.groups] == [True, True], plan
    report = fb.run()
    assert report.complete, report
    journal = fb.journal
    ready_db = journal.last(step="resume_a", event="ready", target=f"vm:site-a:{db.vm_a}")
    sent_app = journal.last(step="resume_a", event="intent", target=f"vm:site-a:{app.vm_a}")
    resumed_db = journal.last(step="resume_a", event="done", target=f"vm:site-a:{db.vm_a}")
    # app was resumed only after db's guest reported, which came 0.2 s into db's boot: the
    # stale READY=YES from before the disaster was cleared before db's resume, not taken.
    assert ready_db is not None and sent_app is not None and resumed_db is not None
    assert ready_db.time <= sent_app.time and ready_db.time - resumed_db.time >= 0.15
    intent_db = journal.last(step="resume_a", event="intent", target=f"vm:site-a:{db.vm_a}")
    assert intent_db is not None and intent_db.data["clears_ready"] is True
    assert {v.vm_b: (v.needs_ready, v.ready is not None) for v in report.vms} == {
        db.vm_b: (True, True), app.vm_b: (True, True)}


def test_a_guest_that_never_reports_holds_the_next_group_and_a_rerun_goes_on(
        gated: MemoryWorld, tmp_path: Path) -> None:
    import dataclasses

    from ceph_failback.testing.world import FAST

    world = gated
    db, app = world.vms
    world.oned_a.guest_reports_ready(db.vm_a, after=3600)  # db's guest does not come up
    fb = world.failback(tmp_path / "j.jsonl", timeouts=dataclasses.replace(FAST, ready=0.5))
    with pytest.raises(StepFailedError) as info:
        fb.run()
    failures = info.value.failures
    assert "READY=YES" in failures[f"vm:site-a:{db.vm_a}"]
    assert "not resumed on site-a" in failures[f"vm:site-a:{app.vm_a}"]
    assert world.oned_a.vm_state(db.vm_a) == ("ACTIVE", "RUNNING")
    assert world.oned_a.vm_state(app.vm_a) == ("POWEROFF", "LCM_INIT")
    report = fb.report()
    assert not report.complete
    # The guest comes up (OneGate's update); the rerun waits for it and resumes app.
    world.site("a").one.update_user_template(db.vm_a, 'READY = "YES"')
    report = world.failback(tmp_path / "j.jsonl").run()
    assert report.complete, report
    assert world.oned_a.vm_state(app.vm_a) == ("ACTIVE", "RUNNING")
    resumes = [vm for vm, act, ok in world.oned_a.actions if ok and act == "resume"]
    assert resumes.count(db.vm_a) == 1  # db was not resumed twice


def test_the_stand_in_s_vm_update_as_oned_does_it() -> None:
    from ceph_failback.errors import OpenNebulaError as Err

    with OnedStandIn(name="a") as oned:
        vm_id = oned.add_vm("v")
        site = OpenNebulaSite("site-a", oned.endpoint, credentials=oned.session, timeout=5)
        site.update_user_template(vm_id, 'ready = "YES"\nOWNER="ops \\"team\\""')
        vm = site.vm(vm_id)
        assert vm.ready == "YES" and vm.is_ready
        assert oned.vm_info(oned._users["oneadmin"], vm_id).count("<READY><![CDATA[YES]]>") == 1
        site.update_user_template(vm_id, 'READY="yes"')
        assert not site.vm(vm_id).is_ready  # OneFlow's test is exact: "YES"
        site.update_user_template(vm_id, 'OTHER="1"', merge=False)  # replaces
        assert site.vm(vm_id).ready == ""
        with pytest.raises(Err):
            site.update_user_template(999, 'READY="YES"')
        with pytest.raises(Err, match="single attributes"):
            site.update_user_template(vm_id, 'V = [ A = "1" ]')


def test_many_vms_in_a_group_are_read_in_one_call() -> None:
    # db's terminate asks about every app VM (they must be DONE first), and each app VM's
    # resume about db: four or more VMs are one vmpool.infoset call, not a call each; one the
    # listing leaves out is read by itself (and raises if it is gone).
    from ceph_failback.failback.steps.base import read_vms

    class Site:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def vm(self, i: int) -> VM:
            self.calls.append(f"vm {i}")
            return VM(i, f"v{i}", "DONE")

        def vms_by_id(self, ids) -> list[VM]:
            self.calls.append(f"by_id {sorted(ids)}")
            return [VM(i, f"v{i}", "DONE") for i in ids if i != 7]

    site = Site()
    assert [v.id for v in read_vms(site, [1, 2])] == [1, 2]  # type: ignore[arg-type]
    assert site.calls == ["vm 1", "vm 2"]
    site.calls.clear()
    assert [v.id for v in read_vms(site, [5, 6, 7, 8])] == [5, 6, 7, 8]  # type: ignore[arg-type]
    assert site.calls == ["by_id [5, 6, 7, 8]", "vm 7"]


def test_two_services_of_the_same_name_stay_apart() -> None:
    # OneFlow does not make service names unique (two users' "web"): the document id tells them
    # apart, and neither loses its order.
    other = Service(9, "web", (Role("front", (), (13,)),))
    order, blockers = order_of(services=[WEB, other])
    assert not blockers
    assert [g.name for g in order.groups] == ["web#7/db", "web#9/front", "web#7/app",
                                              "web#7/lb"]
    assert order.starts_after(21) == [20]


def test_an_explicit_order_for_all_of_a_broken_service_s_vms_lifts_its_blockers() -> None:
    loop = Service(3, "loop", (Role("x", ("y",), (10,)), Role("y", ("x", "nosuch"), (11,))))
    _, blockers = order_of(services=[loop])
    assert {b.kind for b in blockers} == {"order-cycle", "order-unknown-role"}
    order, blockers = order_of([["db"], ["app"]], [loop])
    assert not blockers and [g.name for g in order.groups] == ["group 1", "group 2"]


def test_a_vm_in_two_roles_is_a_blocker() -> None:
    other = Service(9, "mail", (Role("smtp", (), (10,)),))  # VM 10 on A is web's db too
    _, blockers = order_of(services=[WEB, other])
    assert [(b.kind, b.target) for b in blockers] == [("order-duplicate", "vm:site-b:20")]


def test_the_same_vm_twice_in_one_group_is_once() -> None:
    order, blockers = order_of([["db", 20]])
    assert not blockers and order.groups[0].vms == (20,)


@pytest.mark.parametrize("bad", [["db", "app"], [[-1]], [[]], "db", [[True]], [["db", None]]])
def test_an_order_that_is_not_a_list_of_groups_is_refused(tmp_path: Path, bad) -> None:
    from ceph_failback.errors import ConfigurationError

    with MemoryWorld() as world, pytest.raises(ConfigurationError, match="order"):
        world.failback(tmp_path / "j.jsonl", order=bad)


def test_a_resumed_failback_follows_the_order_it_recorded(three_tier: MemoryWorld,
                                                          tmp_path: Path) -> None:
    from ceph_failback.failback.hooks import Hook

    world = three_tier
    db, app, lb, _ = world.vms

    def fail(call) -> None:
        raise RuntimeError("not yet")

    fb = world.failback(tmp_path / "j.jsonl", order=[["db"], ["app"], ["lb"]], oneflow=False,
                        hooks=[Hook("after_resume", fail, vm=db.vm_b)])
    with pytest.raises(StepFailedError):
        fb.run()
    assert world.oned_a.vm_state(app.vm_a) == ("POWEROFF", "LCM_INIT")
    # Resumed with another order (and OneFlow's): the recorded one is kept, and the plan says so.
    again = world.failback(tmp_path / "j.jsonl", order=[["lb"], ["app"], ["db"]])
    plan = again.plan()
    assert [g.name for g in plan.order.groups] == ["group 1", "group 2", "group 3"]
    assert plan.order.group_of(db.vm_b).name == "group 1"  # type: ignore[union-attr]
    assert any("recorded at its first run" in w for w in plan.warnings)
    report = again.run()
    assert report.complete, report  # the failed hook is no longer configured: shown, not counted
    assert [h.configured for h in report.hooks] == [False]
    resumes = [vm for vm, act, ok in world.oned_a.actions if ok and act == "resume"]
    assert [v for v in resumes if v in (db.vm_a, app.vm_a, lb.vm_a)] == [db.vm_a, app.vm_a,
                                                                         lb.vm_a]
