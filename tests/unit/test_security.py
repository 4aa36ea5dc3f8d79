"""Security without a lab: the library starts no process (no shell, no ``rbd`` command), and
reprs and errors never show a secret, even one put in the wrong place of a configuration."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from ceph_failback.ceph import CephConfig, CephSite
from ceph_failback.config import load_config
from ceph_failback.errors import ConfigurationError
from ceph_failback.failback import Failback
from ceph_failback.opennebula import Credentials, OpenNebulaSite

PACKAGE = Path(__file__).resolve().parents[2] / "ceph_failback"
SECRET = "s3cr3t-SENTINEL-9c1f"
KEY = "AQB3ewZrpLf+BRAACOQpBN+7nt5J/hUyUpRg3Q=="  # looks like a cephx key

# What the lab (test tooling, not the library) may run: Ceph's bootstrap tools and daemons.
LAB_COMMANDS = {"ceph-authtool", "monmaptool", "ceph-mon", "ceph-mgr", "ceph-osd", "rbd-mirror"}
PROCESS_MODULES = {"subprocess", "pty", "pexpect", "sh", "plumbum", "commands"}
OS_PROCESS_CALLS = ("system", "popen", "exec", "spawn", "posix_spawn", "fork", "forkpty")


def sources() -> list[tuple[Path, ast.Module]]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20, files
    return [(f, ast.parse(f.read_text(), str(f))) for f in files]


def is_lab(path: Path) -> bool:
    return "lab" in path.relative_to(PACKAGE).parts[:-1]


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


#: The one module that runs a process: the operator's own hook commands, as configured.
HOOKS = Path("failback/hooks.py")


def test_the_library_starts_no_process() -> None:
    """Outside the lab (which starts Ceph daemons for tests) and the operator's hook commands,
    nothing imports a process module or calls os.system/popen/exec*/spawn*/fork: everything goes
    through librados/librbd and XML-RPC, so no command line is ever built from input."""
    found = []
    for path, tree in sources():
        if is_lab(path) or path.relative_to(PACKAGE) == HOOKS:
            continue
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
                if node.module == "os":
                    names += [f"os.{a.name}" for a in node.names]
            elif isinstance(node, ast.Call):
                names = [dotted(node.func)]
            for name in names:
                if (name in PROCESS_MODULES or name.startswith("asyncio.create_subprocess")
                        or (name.startswith("os.") and name[3:].startswith(OS_PROCESS_CALLS))):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {name}")
    assert found == []


def test_hook_commands_run_as_configured_without_a_shell() -> None:
    """hooks.py runs exactly one process call: ``subprocess.run`` of the hook's own argument
    list, with no shell; what the failback knows (VM ids, names) goes in the environment, never
    into the command line."""
    tree = ast.parse((PACKAGE / HOOKS).read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and dotted(n.func).startswith(("subprocess.", "os."))
             and dotted(n.func).split(".")[-1] in ("run", "Popen", "call", "check_call",
                                                   "check_output", "system", "popen")]
    assert [dotted(c.func) for c in calls] == ["subprocess.run"]
    (call,) = calls
    assert dotted(call.args[0]) == "hook.argv"
    assert "shell" not in {k.arg for k in call.keywords}


def test_no_shell_anywhere_and_the_lab_runs_only_ceph_tools() -> None:
    """No ``shell=True`` anywhere (the lab included); the lab's commands are argument lists of
    Ceph's bootstrap tools and daemons, never the ``rbd`` or ``ceph`` command lines."""
    shells, commands, built = [], [], []
    for path, tree in sources():
        where = path.relative_to(PACKAGE)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant)
                                              and kw.value.value is False):
                    shells.append(f"{where}:{node.lineno}")
            func = dotted(node.func)
            if func.startswith("subprocess.") and node.args and isinstance(
                    node.args[0], ast.Constant | ast.JoinedStr | ast.BinOp):
                built.append(f"{where}:{node.lineno}: a command line as a string")
            if func.endswith("._run") and node.args:
                commands.append((where, node.lineno, node.args[0]))
            if func.endswith("._spawn") and len(node.args) > 1 and isinstance(node.args[1],
                                                                             ast.List):
                commands.append((where, node.lineno, node.args[1].elts[0]))
    assert shells == [] and built == []
    assert commands, "the lab's command helpers were not found"
    for where, line, first in commands:
        assert isinstance(first, ast.Constant) and first.value in LAB_COMMANDS, (
            f"{where}:{line}: {ast.dump(first)}")


# -- reprs and errors --------------------------------------------------------------------------


def write_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for name in ("a.conf", "b.conf"):
        files[name] = tmp_path / name
        files[name].write_text("[global]\n")
    for name, entity in (("a.keyring", "client.failback"), ("b.keyring", "client.failback")):
        files[name] = tmp_path / name
        files[name].write_text(f"[{entity}]\n\tkey = {KEY}\n")
    files["auth"] = tmp_path / "one.auth"
    files["auth"].write_text(f"oneadmin:{SECRET}\n")
    return files


def config_text(files: dict[str, Path], **site_a: str) -> str:
    a = {"name": "site-a", "ceph_conf": str(files["a.conf"]), "ceph_client": "client.failback",
         "ceph_keyring": str(files["a.keyring"]), "one_endpoint": "https://one-a.example/RPC2",
         "one_auth": str(files["auth"]), **site_a}
    body = "\n".join(f'{k} = "{v}"' for k, v in a.items())
    return f"""pool = "one"

[site.a]
{body}

[site.b]
name = "site-b"
ceph_conf = "{files['b.conf']}"
ceph_client = "client.failback"
ceph_keyring = "{files['b.keyring']}"
one_endpoint = "https://one-b.example/RPC2"
one_auth = "{files['auth']}"
"""


def test_reprs_never_show_a_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    files = write_files(tmp_path)
    path = tmp_path / "f.toml"
    path.write_text(config_text(files))
    cfg = load_config(path)
    site_a, site_b = cfg.sites()  # nothing is contacted yet
    fb = Failback(site_a, site_b, cfg.pool, journal=tmp_path / "j.jsonl")
    objects: list[object] = [
        cfg, cfg.site_a, cfg.site_a.credentials, cfg.site_a.ceph, site_a, site_a.ceph,
        site_a.one, fb, fb.journal, Credentials("oneadmin", SECRET),
        CephConfig(conffile="/etc/ceph/x.conf", options={"key": KEY, "keyfile": "/k"}),
        OpenNebulaSite("site-x", "https://one.example/RPC2", credentials=f"u:{SECRET}"),
    ]
    for obj in objects:
        for text in (repr(obj), str(obj)):
            assert SECRET not in text and KEY not in text, text
    assert "oneadmin" in repr(site_a.one)  # the user shows, the password never
    assert SECRET not in caplog.text and KEY not in caplog.text


MISPLACED = [
    ({"one_endpoint": f"oneadmin:{SECRET}"}, "site.a.one_endpoint"),
    ({"one_endpoint": f"https://oneadmin:{SECRET}@one-a.example/RPC2"}, "site.a.one_endpoint"),
    ({"ceph_client": KEY}, "site.a.ceph_client"),
    ({"one_auth": f"oneadmin:{SECRET}"}, "site.a.one_auth"),
    ({"password": SECRET}, "unknown key(s) ['password']"),
    ({"ceph_keyring": KEY}, "site.a.ceph_keyring"),
]


@pytest.mark.parametrize(("values", "says"), MISPLACED, ids=[m[1] for m in MISPLACED])
def test_a_secret_in_the_wrong_key_is_never_echoed(tmp_path: Path, values: dict[str, str],
                                                   says: str) -> None:
    files = write_files(tmp_path)
    path = tmp_path / "f.toml"
    path.write_text(config_text(files, **values))
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    text = str(info.value)
    assert says in text and info.value.site == "site-a", text
    assert SECRET not in text and KEY not in text, text


def test_python_api_errors_never_echo_a_secret(tmp_path: Path) -> None:
    pytest.importorskip("rados")
    with pytest.raises(ConfigurationError) as info:
        CephConfig(client=KEY)
    assert KEY not in str(info.value) and "client.<id>" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        OpenNebulaSite("site-x", f"oneadmin:{SECRET}", credentials="u:p")
    assert SECRET not in str(info.value) and "not an http:// or https:// URL" in str(info.value)
    # A keyring without the client's entry: its entities are named, its keys (and any text that
    # is not an entity name) never.
    files = write_files(tmp_path)
    keyring = tmp_path / "other.keyring"
    keyring.write_text(f"[client.admin]\n\tkey = {KEY}\n[{SECRET}]\n")
    site = CephSite("site-x", CephConfig(conffile=str(files["a.conf"]), client="client.failback",
                                         keyring=str(keyring)))
    with pytest.raises(ConfigurationError) as info:
        site.connect()
    text = str(info.value)
    assert "holds no key for client.failback" in text and "client.admin" in text
    assert KEY not in text and SECRET not in text
    keyring.write_text(f"{KEY}\n")  # a bare key where a keyring belongs
    with pytest.raises(ConfigurationError, match="not a keyring") as info:
        site.connect()
    assert KEY not in str(info.value)
