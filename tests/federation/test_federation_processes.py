"""Real ``nabat run`` processes for two districts and the region (PostgreSQL), federated over
real ``nats-server`` processes: traffic at both districts while site A's WAN link is cut
(the district keeps working alone: its API, its console, its siren; the region says it is
cut off) and while site B's hub is SIGKILLed and started again. Afterwards every event either
district acknowledged is in the regional journal once, in order per site."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from federation_config import district_config, region_config
from nabat.testing import free_port

pytestmark = pytest.mark.timeout(300)

PG_DSN = os.environ.get("NABAT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

TYPE = "bench.ping"
BATCH = 10


class HubProcess:
    """``nabat run`` in a directory of its own, its API on a free port."""

    def __init__(self, workdir: Path, config: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        workdir.mkdir(parents=True)
        (workdir / "plugins.toml").write_text(
            config + f'\n[api]\nlisten = "127.0.0.1:{self.port}"\n'
        )
        self.proc: asyncio.subprocess.Process | None = None
        self.env = {**os.environ, "NABAT_LANG": "en"}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, name: str, scopes: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "nabat", "tokens", "create", "--name", name, "--scopes",
             scopes, "--rate", "10000", "--burst", "10000", "--json"],
            cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["secret"]

    async def start(self) -> None:
        with (self.workdir / "hub.log").open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "nabat", "run",
                cwd=self.workdir, env=self.env, stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        async with httpx.AsyncClient(timeout=2) as http:
            for _ in range(300):
                if self.proc.returncode is not None:
                    break
                try:
                    if (await http.get(f"{self.url}/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        log_tail = (self.workdir / "hub.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"nabat run in {self.workdir} did not come up:\n{log_tail}")

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(20):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def _district(site: str, municipality: str, nats_url: str) -> str:
    return district_config(
        site,
        municipality,
        nats_url,
        data_dir=None,
        hub='log_format = "json"',
        federation='up = ["bench.>", "alert.>"]',
    )


def _region(nats_url: str, schema: str) -> str:
    return region_config(
        nats_url,
        {"site-a": ["abinsky"], "site-b": ["anapa"]},
        data_dir=None,
        hub='log_format = "json"',
        storage=PG_DSN,
        schema=schema,
    )


class Producer:
    """Batches of events for one district, numbered in order; a batch that is not
    acknowledged (the hub killed, the connection refused) is sent again, same ids, until it
    is — as a well-behaved client would."""

    def __init__(self, hub: HubProcess, token: str, site: str) -> None:
        self.hub, self.site = hub, site
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/cloudevents-batch+json",
        }
        self.acknowledged: list[int] = []
        self.refused = 0
        self.running = True

    def _batch(self, first: int) -> bytes:
        return json.dumps(
            [
                {
                    "specversion": "1.0",
                    "type": TYPE,
                    "source": f"/test/{self.site}",
                    "id": f"{self.site}-{n:06d}",
                    "data": {"n": n},
                }
                for n in range(first, first + BATCH)
            ]
        ).encode()

    async def run(self) -> None:
        n = 0
        async with httpx.AsyncClient(timeout=5) as http:
            while self.running:
                try:
                    answer = await http.post(
                        f"{self.hub.url}/api/v1/events",
                        content=self._batch(n),
                        headers=self.headers,
                    )
                except httpx.HTTPError:
                    answer = None
                if answer is not None and answer.status_code == 202:
                    self.acknowledged += range(n, n + BATCH)
                    n += BATCH
                else:
                    self.refused += 1
                await asyncio.sleep(0.05)


async def _region_numbers(region: HubProcess, token: str) -> dict[str, list[int]]:
    """Each site's event numbers in the regional journal's order."""
    found: dict[str, list[int]] = {"site-a": [], "site-b": []}
    cursor = None
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            params = {"type": TYPE, "limit": "1000", **({"cursor": cursor} if cursor else {})}
            page = (
                await http.get(
                    f"{region.url}/api/v1/events",
                    params=params,
                    headers={"Authorization": f"Bearer {token}"},
                )
            ).json()
            for item in page["events"]:
                event = item["event"]
                found[event["site"]].append(event["data"]["n"])
            cursor = page.get("next_cursor")
            if not cursor:
                return found


async def _until(check, timeout: float, what: str):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout:g}s")


async def test_districts_and_region_as_processes_through_a_cut_and_a_kill(
    tmp_path, nats_federation, pg_schema
):
    sites = {"site-a": "abinsky", "site-b": "anapa"}
    links = {name: nats_federation.site(name) for name in sites}
    districts = {
        name: HubProcess(tmp_path / name, _district(name, m, links[name].url))
        for name, m in sites.items()
    }
    region = HubProcess(tmp_path / "region", _region(nats_federation.region.url, pg_schema))
    tokens = {
        name: hub.token("producer", "events:write,alerts:activate,events:read")
        for name, hub in districts.items()
    }
    reader = region.token("reader", "events:read")
    producers = {name: Producer(hub, tokens[name], name) for name, hub in districts.items()}
    tasks: list[asyncio.Task] = []
    try:
        for hub in (*districts.values(), region):
            await hub.start()
        tasks = [asyncio.ensure_future(p.run()) for p in producers.values()]
        await asyncio.sleep(2)

        # Site A's WAN link is cut: the district goes on alone.
        links["site-a"].link.cut()
        links["site-a"].wait_unlinked()
        a = districts["site-a"]
        async with httpx.AsyncClient(timeout=30) as http:
            auth = {"Authorization": f"Bearer {tokens['site-a']}"}
            alert = await http.post(
                f"{a.url}/api/v1/alerts?wait=10",
                json={
                    "status": "Exercise",
                    "event": "Flood drill",
                    "area": {"municipalities": ["abinsky"]},
                },
                headers=auth,
            )
            assert alert.status_code == 202, alert.text
            assert [d["outcome"] for d in alert.json()["devices"]] == ["activated"]
            drill = alert.json()["id"]
            assert (await http.get(f"{a.url}/console")).status_code == 200  # its console

            # ...and the region says it is cut off, not that it has nothing to say.
            async def cut_off():
                page = (
                    await http.get(
                        f"{region.url}/api/v1/sites", headers={"Authorization": f"Bearer {reader}"}
                    )
                ).json()
                return {s["site"]: s["reachable"] for s in page["items"]}.get("site-a") is False

            await _until(cut_off, 30, "the region seeing site-a cut off")
        during = len(producers["site-a"].acknowledged)
        links["site-a"].link.restore()
        links["site-a"].wait_linked()

        # Site B's hub is SIGKILLed mid-stream, then started again.
        await districts["site-b"].kill()
        await asyncio.sleep(1)
        await districts["site-b"].start()
        await asyncio.sleep(2)
    finally:
        for producer in producers.values():
            producer.running = False
        await asyncio.gather(*tasks, return_exceptions=True)
    try:
        assert len(producers["site-a"].acknowledged) > during  # it went on after the cut
        assert producers["site-b"].refused >= 1  # the kill was mid-stream

        async def arrived():
            found = await _region_numbers(region, reader)
            done = all(
                set(producers[s].acknowledged) <= set(found[s]) for s in ("site-a", "site-b")
            )
            return found if done else None

        found = await _until(arrived, 90, "every acknowledged event at the region")
        for site in sites:
            numbers = found[site]
            assert numbers == sorted(numbers), f"{site}'s events out of order at the region"
            assert len(numbers) == len(set(numbers)), f"{site}'s events twice at the region"
            assert set(producers[site].acknowledged) <= set(numbers)
        # The drill sounded at A during the cut is in the region's record too, with its site.
        async with httpx.AsyncClient(timeout=10) as http:
            page = (
                await http.get(
                    f"{region.url}/api/v1/events",
                    params={"type": "alert.device.activated"},
                    headers={"Authorization": f"Bearer {reader}"},
                )
            ).json()
        sounded = [e["event"] for e in page["events"] if e["event"].get("correlationid") == drill]
        assert [(e["site"], e["subject"]) for e in sounded] == [("site-a", "siren-site-a")], sounded
    finally:
        for hub in (*districts.values(), region):
            await hub.stop()
