"""``apprise.notifier`` and the hub's durable notification delivery, against a real SMTP
server (aiosmtpd on loopback) and a real HTTP receiver (aiohttp) through Apprise's own
``mailto://`` and ``json://`` services: a rule's notification arrives at each recipient with
the catalog's text in the notifier's language; a refused send is retried with backoff and
then dead-lettered with a severe event; secrets never show in events or logs."""

from __future__ import annotations

import logging

import msgspec
import pytest
from aiohttp import web
from nabat.events import Event
from nabat.notifications import NotificationRequest
from nabat.store.delivery import IssueState
from nabat.testing import load_config_text, record, run_cli, run_hub

pytestmark = pytest.mark.timeout(120)

TOKEN = "hook-s3cret-token-4d9f"


class Receiver:
    """A JSON webhook receiver: 500 for the first ``fail`` posts, then 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.fail = 0
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append((request.path, await request.json()))
        if self.fail:
            self.fail -= 1
            return web.Response(status=500, text="receiver busy")
        return web.Response(status=200)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


def config(smtp_port: int, http_port: int, *, attempts: int = 3) -> str:
    return f"""
[hub]
language = "en"
data_dir = "data"
[plugins.eventlog]
enabled = false
[plugins.watch]
enabled = false
[plugins.apprise]
[notifications]
backoff_initial = 0.2
backoff_max = 0.5
max_attempts = {attempts}

[instances.duty-mail]
kind = "apprise.notifier"
name = "ЕДДС: почта"
[instances.duty-mail.settings]
language = "ru"
[[instances.duty-mail.settings.targets]]
name = "mail"
url = "mailto://localhost:{smtp_port}?from=nabat@edds.example&to={{recipient}}"
recipients = ["duty@edds.example"]
[[instances.duty-mail.settings.targets]]
name = "hook"
url = "json://127.0.0.1:{http_port}/hook/{{token}}"
secrets = {{ token = {{ env = "NABAT_TEST_HOOK_TOKEN" }} }}

[instances.region-mail]
kind = "apprise.notifier"
[instances.region-mail.settings]
language = "en"
[[instances.region-mail.settings.targets]]
name = "mail"
url = "mailto://localhost:{smtp_port}?from=nabat@region.example&to={{recipient}}"

[[rules]]
name = "high-water"
when.type = ["sensor.water.level"]
when.data = {{ level_cm = {{ gt = 300 }} }}
cooldown = 0
[[rules.then]]
notify = "duty-mail"
recipients = ["ivanov@edds.example", "petrova@edds.example"]
template = "water_level"
[[rules.then]]
notify = "region-mail"
recipients = ["region@region.example"]
template = "water_level"
"""


def water(level: int) -> Event:
    return Event(
        type="sensor.water.level",
        source="urn:sensor:mzymta-1",
        municipality="sochi",
        severity="severe",
        data={"level_cm": level, "station": "р. Мзымта, Адлер"},
    )


async def _outcomes(hub, kind: str) -> list[dict]:
    from nabat.store import EventQuery

    page = await hub.journal.query(EventQuery(types=(kind,), limit=100))
    return [msgspec.to_builtins(e.event.data) for e in page.events]


async def test_a_rule_notifies_each_recipient_in_the_notifiers_language(
    tmp_path, smtp, monkeypatch, caplog
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("NABAT_TEST_HOOK_TOKEN", TOKEN)
    mailbox, smtp_port = smtp, smtp.port
    async with Receiver() as receiver:
        loaded = load_config_text(config(smtp_port, receiver.port), tmp_path)
        async with run_hub(loaded) as hub:
            delivered = record(hub, "notification.delivered")
            await hub.publish(water(420))
            await delivered.wait_for_count("notification.delivered", 4, timeout=30)

            # The ЕДДС's notifier speaks Russian, to each of the rule's recipients.
            for person in ("ivanov@edds.example", "petrova@edds.example"):
                [mail] = mailbox.to(person)
                assert mail["Subject"] == "Подъём воды: р. Мзымта, Адлер"
                text = mail.get_body(("plain",)).get_content()
                assert "Уровень воды 420 см, р. Мзымта, Адлер (sochi)" in text
                assert mail["From"] == "nabat@edds.example"
            # The region's notifier renders the same template in English.
            [mail] = mailbox.to("region@region.example")
            assert mail["Subject"] == "High water: р. Мзымта, Адлер"
            # The webhook got it at the URL its secret completes.
            [(path, body)] = receiver.posts
            assert path == f"/hook/{TOKEN}"
            assert body["title"] == "Подъём воды: р. Мзымта, Адлер"
            assert "420" in body["message"] and body["type"] == "failure"  # severe

            outcomes = await _outcomes(hub, "notification.delivered")
            assert sorted((o["notifier"], o["destination"]) for o in outcomes) == [
                ("duty-mail", "hook"),
                ("duty-mail", "mail:ivanov@edds.example"),
                ("duty-mail", "mail:petrova@edds.example"),
                ("region-mail", "mail:region@region.example"),
            ]
            # The same request again (a redelivered rule run): nobody is told twice.
            requests = await _outcomes(hub, "notification.requested")
            assert len(requests) == 2
            request = NotificationRequest(**requests[0])
            await hub.notifications.request(request, key=(await _request_ids(hub))[0])
            await hub.notifications.request(
                NotificationRequest(notifier="duty-mail", title="проверка", body="связь"),
                key="probe-1",
            )
            await delivered.wait_for_count("notification.delivered", 6, timeout=30)
            assert len(mailbox.to("ivanov@edds.example")) == 1
            assert len(mailbox.to("duty@edds.example")) == 1  # the target's own recipient

            # The secret is nowhere in the journal or the log.
            page = await _all(hub)
            assert TOKEN not in page
            # (The test's own receivers log what they got: not the hub's log.)
            hubs = [r for r in caplog.records if not r.name.startswith(("aiohttp", "mail.log"))]
            assert all(TOKEN not in r.getMessage() for r in hubs)
            assert any("json://" in r.getMessage() for r in hubs)  # Apprise did log its URL


async def _request_ids(hub) -> list[str]:
    from nabat.store import EventQuery

    page = await hub.journal.query(EventQuery(types=("notification.requested",), limit=10))
    return [e.event.id for e in page.events]


async def _all(hub) -> str:
    from nabat.store import EventQuery

    page = await hub.journal.query(EventQuery(limit=1000))
    return "\n".join(msgspec.json.encode(e.event).decode() for e in page.events)


async def test_a_refused_send_is_retried_then_dead_lettered(tmp_path, smtp, monkeypatch):
    monkeypatch.setenv("NABAT_TEST_HOOK_TOKEN", TOKEN)
    mailbox, smtp_port = smtp, smtp.port
    mailbox.refuse = {"petrova@edds.example"}
    async with Receiver() as receiver:
        receiver.fail = 1  # the webhook is busy once, then takes it
        loaded = load_config_text(config(smtp_port, receiver.port, attempts=3), tmp_path)
        async with run_hub(loaded) as hub:
            failed = record(hub, "notification.failed")
            delivered = record(hub, "notification.delivered")
            await hub.publish(water(450))
            [dead] = await failed.wait_for_count("notification.failed", 1, timeout=30)
            assert dead.severity == "severe"
            assert dead.data.destination == "mail:petrova@edds.example"
            assert dead.data.attempts == 3
            assert "petrova@edds.example" in dead.data.detail
            assert mailbox.refused == 3  # three real attempts, then it gave up
            retries = await _outcomes(hub, "notification.retrying")
            assert sorted((r["destination"], r["attempts"]) for r in retries) == [
                ("hook", 1),
                ("mail:petrova@edds.example", 1),
                ("mail:petrova@edds.example", 2),
            ]
            # The others arrived, the webhook on its second try; each once.
            await delivered.wait_for_count("notification.delivered", 3, timeout=30)
            assert len(mailbox.to("ivanov@edds.example")) == 1
            assert len(receiver.posts) == 2
            # The dead letter is kept for an operator (nabat deliveries).
            issues = await hub.journal.issues("notifications", IssueState.DEAD, limit=10)
            assert len(issues) == 1 and "petrova" in issues[0].last_error

            # A recipient Apprise cannot read: a dead letter at the first attempt.
            await hub.notifications.request(
                NotificationRequest(notifier="region-mail", recipients=["not an address"]),
                key="unreadable",
            )
            await failed.wait_for_count("notification.failed", 2, timeout=30)
            [bad] = [
                o
                for o in await _outcomes(hub, "notification.failed")
                if o["destination"] == "mail:not an address"
            ]
            assert bad["attempts"] == 1 and "takes no recipient" in bad["detail"]
            # A notifier that does not exist: a dead letter at once, saying why.
            await hub.notifications.request(
                NotificationRequest(notifier="nobody", title="x", body="y"), key="to-nobody"
            )
            await failed.wait_for_count("notification.failed", 3, timeout=30)
            failures = await _outcomes(hub, "notification.failed")
            lost = [o for o in failures if o["request"] == "to-nobody"]
            assert "no notifier instance 'nobody'" in lost[0]["detail"]


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (
            'url = "mailto://nabat:hunter2@smtp.example?to=a@b.example"',
            "the url carries a password",
        ),
        ('url = "tgram://{token}/12345"', "url names token but secrets has no such key"),
        (
            'url = "json://h.example/x"\nsecrets = { token = { env = "HOME" } }',
            "secrets token are not in the url",
        ),
    ],
)
def test_nabat_config_check_refuses_a_secret_inline_or_missing(tmp_path, target, reason):
    (tmp_path / "plugins.toml").write_text(
        f"""
[plugins.apprise]
[instances.n]
kind = "apprise.notifier"
[[instances.n.settings.targets]]
name = "t"
{target}
""",
        encoding="utf-8",
    )
    done = run_cli("config", "check", "plugins.toml", cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert reason in out and "instances.n.settings" in out
    assert "hunter2" not in out


def test_nabat_config_show_masks_the_secrets(tmp_path):
    (tmp_path / "plugins.toml").write_text(
        """
[plugins.apprise]
[instances.n]
kind = "apprise.notifier"
[[instances.n.settings.targets]]
name = "chat"
url = "tgram://{token}/-100123"
secrets = { token = { env = "NABAT_TEST_TG" } }
""",
        encoding="utf-8",
    )
    done = run_cli(
        "config", "show", "plugins.toml", cwd=tmp_path, env={"NABAT_TEST_TG": "123:tg-s3cret"}
    )
    assert done.returncode == 0, done.stderr
    assert "tg-s3cret" not in done.stdout and "tgram://{token}/-100123" in done.stdout


async def test_an_admin_lists_notifiers_and_sends_a_test_message(tmp_path, smtp, monkeypatch):
    import httpx
    from nabat.testing import run_api

    monkeypatch.setenv("NABAT_TEST_HOOK_TOKEN", TOKEN)
    mailbox, smtp_port = smtp, smtp.port
    async with Receiver() as receiver:
        loaded = load_config_text(config(smtp_port, receiver.port), tmp_path)
        async with run_hub(loaded) as hub, run_api(hub) as server:
            admin, _ = await server.state.tokens.create("admin", ["admin"])
            reader, _ = await server.state.tokens.create("monitor", ["ops:read"])
            delivered = record(hub, "notification.delivered")
            async with httpx.AsyncClient(base_url=server.url) as http:
                listed = await http.get(
                    "/api/v1/notifiers", headers={"Authorization": f"Bearer {admin}"}
                )
                assert listed.status_code == 200, listed.text
                duty = next(n for n in listed.json() if n["id"] == "duty-mail")
                assert duty["state"] == "running" and duty["language"] == "ru"
                assert duty["destinations"] == ["mail:duty@edds.example", "hook"]
                assert TOKEN not in listed.text
                refused = await http.post(
                    "/api/v1/notifiers/duty-mail/test",
                    json={},
                    headers={"Authorization": f"Bearer {reader}"},
                )
                assert refused.status_code == 403
                missing = await http.post(
                    "/api/v1/notifiers/nope/test",
                    json={},
                    headers={"Authorization": f"Bearer {admin}"},
                )
                assert missing.status_code == 404
                sent = await http.post(
                    "/api/v1/notifiers/duty-mail/test",
                    json={"recipients": ["sidorov@edds.example"]},
                    headers={"Authorization": f"Bearer {admin}"},
                )
                assert sent.status_code == 202, sent.text
            await delivered.wait_for_count("notification.delivered", 2, timeout=30)
            [mail] = mailbox.to("sidorov@edds.example")
            assert mail["Subject"] == "Набат: проверка оповещения"
            assert "token:" in mail.get_body(("plain",)).get_content()  # who sent it
            assert all(e.correlationid == sent.json()["request"] for e in delivered.events)
