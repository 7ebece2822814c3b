"""The routing feature's config step against a real HAProxy: read, plan, apply, plan again.

The facts and the step go through a runner on this machine whose host paths (haproxy.cfg,
the apply script, its staged file) lead to the fixture's HAProxy; see haproxy_fixture.py.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from infr.connector.target import Result
from infr.engine import facts
from infr.engine.plan import Step
from infr.errors import RemoteError
from infr.routing import certificates, deploy
from infr.routing.certs import DEPLOY_HOOK, CertbotSettings, CertRequest
from infr.routing.feature import Certbot, Desired, Found, cert_steps, config_steps
from infr.routing.haproxy import certificate_requests
from tests.integration.haproxy_fixture import (  # noqa: F401  (the *_fixture names register pytest fixtures)
    HOST,
    Containers,
    Haproxy,
    containers_fixture,
    haproxy_fixture,
    http_get,
    https_get,
    loopback_fixture,
    pem_der,
    require_tools,
)
from tests.integration.pebble import StartPebble, pebble_factory_fixture  # noqa: F401

pytestmark = pytest.mark.integration


class LocalHost:
    """A runner on this machine, with the host's HAProxy paths mapped to the fixture's."""

    def __init__(self, proxy: Haproxy, **env: str) -> None:
        self.env = {**proxy.env(), **env}
        self.certs = proxy.settings.certs_dir
        self.paths = {
            deploy.CONFIG: str(proxy.config),
            deploy.APPLY_SCRIPT: str(proxy.apply_script),
            deploy.STAGED: str(proxy.dir / "staged.cfg"),
        }

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 90, check: bool = True, **_: object
    ) -> Result:
        done = subprocess.run(
            [self._local(arg) for arg in argv], input=input, capture_output=True, env=self.env, timeout=timeout
        )
        if check and done.returncode != 0:
            raise RemoteError(f"{argv[0]} failed: {done.stderr.decode()}")
        return Result(done.returncode, done.stdout, done.stderr)

    def _local(self, path: str) -> str:
        if path.startswith(f"{certificates.CERTS_DIR}/"):
            return self.certs + path.removeprefix(certificates.CERTS_DIR)
        return self.paths.get(path, path)

    def put_file(self, path: str, data: bytes, *, owner: str, group: str, mode: int) -> None:
        Path(self.paths[path]).write_bytes(data)


def plan_config(runner: LocalHost, config: str) -> list[Step]:
    found = facts.read_files(runner, [deploy.CONFIG])
    return config_steps(HOST.name, config, found[deploy.CONFIG])


def test_a_planned_config_goes_live_and_a_hand_edit_is_found_and_undone(
    haproxy: Haproxy, containers: Containers
) -> None:
    web, api = containers.add("web"), containers.add("api")
    haproxy.start([web.lxc(http="FORWARD")])
    runner = LocalHost(haproxy)
    port = haproxy.settings.http_port
    assert http_get(haproxy.address, port, "api.infr.example.test")[0] == 404

    wanted = haproxy.render([web.lxc(http="FORWARD"), api.lxc(http="FORWARD")])
    [step] = plan_config(runner, wanted)
    assert step.description == "update haproxy.cfg: added backend lxc_api_http; changed frontend http (+3 -0 lines)"
    step.run(runner)
    assert http_get(haproxy.address, port, "api.infr.example.test")[2].startswith("container api\n")
    assert plan_config(runner, wanted) == []

    # Someone drops the api route by hand: the plan shows it, applying puts it back.
    haproxy.config.write_text(haproxy.render([web.lxc(http="FORWARD")]))
    assert haproxy.run_apply("--reload").returncode == 0
    assert http_get(haproxy.address, port, "api.infr.example.test")[0] == 404
    [repair] = plan_config(runner, wanted)
    assert "+backend lxc_api_http\n" in repair.diff
    repair.run(runner)
    assert http_get(haproxy.address, port, "api.infr.example.test")[0] == 200
    assert haproxy.config.read_text() == wanted


def test_a_config_haproxy_refuses_fails_its_step_and_changes_nothing(haproxy: Haproxy, containers: Containers) -> None:
    web = containers.add("web")
    haproxy.start([web.lxc(http="FORWARD")])
    runner = LocalHost(haproxy)
    live = haproxy.config.read_text()
    [step] = plan_config(runner, live + "\nbackend broken\n    server x 10.0.0.1:notaport\n")
    with pytest.raises(RemoteError, match="failed 'haproxy -c'; nothing changed"):
        step.run(runner)
    assert haproxy.config.read_text() == live
    assert http_get(haproxy.address, haproxy.settings.http_port, "web.infr.example.test")[0] == 200


def test_certificate_steps_obtain_through_haproxy_then_delete(
    haproxy: Haproxy, containers: Containers, pebble_factory: StartPebble, tmp_path: Path
) -> None:
    require_tools("certbot")
    shop = containers.add("shop")
    lxcs = [shop.lxc(https="TERMINATE")]
    haproxy.start(lxcs)
    ca = pebble_factory(haproxy.address, haproxy.settings.http_port, haproxy.address)
    settings = CertbotSettings(
        server=ca.directory_url,
        http01_address=haproxy.settings.acme_address,
        http01_port=haproxy.settings.acme_port,
        config_dir=str(tmp_path / "letsencrypt"),
        work_dir=str(tmp_path / "work"),
        logs_dir=str(tmp_path / "logs"),
        deploy_hook=str(haproxy.install(DEPLOY_HOOK)),
    )
    runner = LocalHost(haproxy, REQUESTS_CA_BUNDLE=str(ca.listener_cert), INFR_HAPROXY_APPLY=str(haproxy.apply_script))
    host = dataclasses.replace(HOST, public_ip=haproxy.address)
    said: list[str] = []
    certbot = Certbot(settings, lambda: ca.resolve, said.append)

    def plan(certs: list[CertRequest]) -> list[Step]:
        found = Found({}, {}, certificates.installed(runner, settings))
        return cert_steps(host, Desired("", (), certs), found, certbot)

    wanted = certificate_requests(lxcs, haproxy.settings)
    [obtain] = plan(wanted)
    assert obtain.description == "obtain certificate shop for shop.infr.example.test"
    assert obtain.run(runner) == ["certificate shop for shop.infr.example.test"]
    assert said == [f"asking {ca.directory_url} for a certificate: shop.infr.example.test"]
    installed = Path(haproxy.settings.certs_dir) / "shop.pem"
    served = https_get(haproxy.address, haproxy.settings.https_port, "shop.infr.example.test")[1]
    assert served == pem_der(installed.read_text())
    assert plan(wanted) == []

    [delete] = plan([])
    assert delete.description == "delete certificate shop"
    delete.run(runner)
    assert not installed.exists()
    assert plan([]) == []
