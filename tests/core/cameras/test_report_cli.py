"""``nabat report cameras`` and ``nabat cameras delete`` as real commands, on the journal a
hub wrote."""

from __future__ import annotations

import csv
import io
import json

from nabat.cameras.inventory import parse_csv
from nabat.regions import load_region
from nabat.testing import eventually, record, run_cli, run_hub

CONFIG = """
[hub]
language = "en"
data_dir = "data"

[cameras]
availability_target = 99.0
targets = { sochi = 3 }

[plugins.eventlog]
enabled = false

[plugins.simulator]
settings = { incident_every = 3600.0, exercise_every = 3600.0 }

[plugins.watch.settings]
camera_interval = 3600.0
jitter = 0.0

[instances.cfg-cam]
kind = "simulator.camera"
municipality = "krasnodar"
settings = { fault_rate = 0.0 }

[instances.cfg-siren]
kind = "simulator.siren"
municipality = "krasnodar"
"""


async def test_report_and_delete_commands(tmp_path):
    (tmp_path / "plugins.toml").write_text(CONFIG, encoding="utf-8")
    async with run_hub(CONFIG, tmp_path) as hub:
        seen = record(hub, "camera.health.*")
        text = "id;name;municipality;driver;url;credentials\n" + "".join(
            f"sochi-{i};Sochi {i};sochi;simulator.camera;10.0.0.{i}:80;\n" for i in (1, 2)
        )
        rows, _ = parse_csv(text, load_region("krasnodar-krai").municipalities)
        await hub.inventory.import_rows(rows)
        await hub.sync_inventory()
        await eventually(lambda: len({e.subject for e in seen.events}) == 3, what="3 probed")

    done = run_cli("report", "cameras", "--format", "csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {r["municipality"]: r for r in csv.DictReader(io.StringIO(done.stdout))}
    assert set(rows) == {"krasnodar", "sochi", "total"}  # the siren is not a camera
    assert rows["krasnodar"]["total"] == "1" and rows["sochi"]["total"] == "2"
    assert rows["sochi"]["target"] == "3" and rows["sochi"]["lagging"] == "yes"
    assert rows["total"]["total"] == "3"

    as_json = run_cli("report", "cameras", "--format", "json", "--since", "1h", cwd=tmp_path)
    report = json.loads(as_json.stdout)
    assert report["total"]["total"] == 3 and report["availability_target"] == 99.0
    table = run_cli("report", "cameras", "--municipality", "sochi", cwd=tmp_path)
    assert table.returncode == 0 and "< target 3" in table.stdout
    assert "Krasnodar" not in table.stdout

    bad = run_cli("report", "cameras", "--since", "yesterday", cwd=tmp_path)
    assert bad.returncode == 2 and "7d" in bad.stderr

    gone = run_cli("cameras", "delete", "sochi-1", "nope", cwd=tmp_path)
    assert gone.returncode == 1 and "1 deleted" in gone.stdout and "'nope'" in gone.stderr
    left = json.loads(run_cli("cameras", "list", "--json", cwd=tmp_path).stdout)
    assert [c["id"] for c in left if c.get("source") != "config"] == ["sochi-2"]
    assert [c["id"] for c in left if c.get("source") == "config"] == ["cfg-cam"]  # kept
