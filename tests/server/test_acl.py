"""``--acl FILE``: identities from TLS client certificates, and what each may submit, work
on and administer -- end to end with real certificates (trustme) and gearshift's client,
plus the file's parser and the broker's checks as plain calls."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gearshift.broker._acl import AclError, certificate_subject, parse_acl
from gearshift.client import AdminClient, AdminError, Client, Job, ServerError, Worker
from gearshift.testing import GearshiftServer

ACL = """
[identity.web]
subject = "CN=web"
submit = ["mail.*"]
admin = "read"

[identity.workers]
subject = "CN=worker-pool,O=Example"
work = ["*"]

[anonymous]
admin = "none"
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import trustme

    out = tmp_path_factory.mktemp("acl")
    ca = trustme.CA()
    files = {"ca": out / "ca.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(out / "server.pem"))
    server.private_key_pem.write_to_path(str(out / "server.key"))
    for name, cn, org in (("web", "web", None), ("workers", "worker-pool", "Example"),
                          ("intruder", "intruder", None)):
        leaf = ca.issue_cert(f"{name}.test", common_name=cn, organization_name=org)
        leaf.cert_chain_pems[0].write_to_path(str(out / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(out / f"{name}.key"))
        files[name] = out / name
    files["dir"] = out
    (out / "acl.toml").write_text(ACL)
    return files


def context(pki: dict[str, Path], who: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    ctx.load_cert_chain(f"{pki[who]}.pem", f"{pki[who]}.key")
    return ctx


@pytest.fixture(scope="module")
def server(pki: dict[str, Path]) -> Iterator[GearshiftServer]:
    out = pki["dir"]
    proc = GearshiftServer(extra_args=[
        "--ssl", "--ssl-certificate", str(out / "server.pem"), "--ssl-key",
        str(out / "server.key"), "--ssl-ca-file", str(pki["ca"]),
        "--acl", str(out / "acl.toml")])
    proc.tls = context(pki, "web")
    with proc:
        yield proc


def test_identities_get_their_rights(server: GearshiftServer, pki: dict[str, Path]) -> None:
    worker = Worker([server.address], ssl=context(pki, "workers"))
    worker.register("mail.send", lambda job: b"sent " + job.data)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        with Client([server.address], ssl=context(pki, "web"), timeout=20) as web:
            assert web.submit("mail.send", b"hi") == b"sent hi"
            with pytest.raises(ServerError) as info:
                web.submit("billing.charge", b"")
            assert info.value.code == b"PERMISSION_DENIED"
        with Client([server.address], ssl=context(pki, "intruder"), timeout=20) as other, \
                pytest.raises(ServerError):
            other.submit("mail.send", b"spam")  # matched no identity: nothing granted
        with AdminClient(server.address, ssl=context(pki, "web"), timeout=10) as admin:
            assert any(s.function == "mail.send" for s in admin.status())  # read: yes
            with pytest.raises(AdminError) as denied:
                admin.command("maxqueue mail.send 5")  # write: no
            assert denied.value.code == "PERMISSION_DENIED"
        with AdminClient(server.address, ssl=context(pki, "intruder"), timeout=10) as admin, \
                pytest.raises(AdminError):
            admin.status()  # "none": not even listings
    finally:
        worker.stop()
        thread.join(10)


def test_a_worker_may_only_register_what_it_may_work_on(server: GearshiftServer,
                                                          pki: dict[str, Path]) -> None:
    rogue = Worker([server.address], ssl=context(pki, "web"))  # web may not work
    seen: list[Job] = []
    rogue.register("mail.send", lambda job: seen.append(job) or b"stolen")
    thread = threading.Thread(target=rogue.run, kwargs={"stop_when_idle": True},
                              daemon=True)
    thread.start()
    thread.join(10)
    assert rogue.registrations(server.address) == 1  # it did connect and ask
    with AdminClient(server.address, ssl=context(pki, "web"), timeout=10) as admin:
        workers = {w.fd: w.functions for w in admin.workers()}
    assert not any("mail.send" in funcs for funcs in workers.values() if funcs)
    assert seen == []


def test_certificate_subject_and_matching() -> None:
    acl = parse_acl(ACL)
    cert = {"subject": ((("commonName", "worker-pool"),), (("organizationName", "Example"),))}
    subject = certificate_subject(cert)
    assert subject == {"CN": "worker-pool", "O": "Example"}
    assert acl.rights_for(subject).name == "workers"
    assert acl.rights_for({"CN": "worker-pool"}).name == "anonymous"  # O must match too
    assert acl.rights_for(None).name == "anonymous"
    web = acl.rights_for({"CN": "web"})
    assert web.may_submit(b"mail.send")
    assert not web.may_submit(b"mailer")  # "mail.*" is a glob, not a prefix
    assert not web.may_work(b"mail.send")


@pytest.mark.parametrize(("text", "message"), [
    ("[identity.x]\nsubmit = []", "needs subject"),
    ("[identity.x]\nsubject = 'CN'\n", "expected KEY=VALUE"),
    ("[identity.x]\nsubject = 'CN=x'\nadmin = 'root'\n", "admin must be one of"),
    ("[identity.x]\nsubject = 'CN=x'\nsubmitt = []\n", "unknown key"),
    ("[roles]\n", "unknown table"),
    ("[identity.x]\nsubject = 'CN=x'\nwork = 'all'\n", "list of function globs"),
    ("[identity.x\n", "acl.toml"),
])
def test_bad_acl_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(AclError, match=message):
        parse_acl(text, "acl.toml")
