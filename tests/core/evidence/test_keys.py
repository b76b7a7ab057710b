"""The hub's signing key: created once (0600, atomically, one key however many processes
race to create it), then reused; a key file others may read is refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from nabat.evidence import SigningKeyError, load_or_create_key
from nabat.evidence.keys import check_signature, key_path, matches_pin
from nabat.testing import run_cli


def test_the_key_is_created_private_and_reused(tmp_path):
    first = load_or_create_key(tmp_path)
    path = key_path(tmp_path)
    assert path == tmp_path / "evidence" / "signing-key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    second = load_or_create_key(tmp_path)
    assert second.public_key == first.public_key
    assert len(first.fingerprint.replace(" ", "")) == 64
    assert sorted(p.name for p in path.parent.iterdir()) == ["signing-key.pem"]  # no temp left
    signature = second.sign(b"manifest")
    assert check_signature(first.public_key, b"manifest", signature)
    assert not check_signature(first.public_key, b"manifest!", signature)
    assert matches_pin(first.public_key, first.fingerprint.replace(" ", ":"))


def test_a_key_file_others_may_read_is_refused(tmp_path):
    load_or_create_key(tmp_path)
    key_path(tmp_path).chmod(0o644)
    with pytest.raises(SigningKeyError, match=r"may be read by others \(mode 0644\).*chmod 600"):
        load_or_create_key(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_file_is_refused(tmp_path):
    load_or_create_key(tmp_path)
    key_path(tmp_path).chmod(0o000)
    with pytest.raises(SigningKeyError, match="cannot be read"):
        load_or_create_key(tmp_path)


def test_a_key_file_that_is_no_key_is_refused(tmp_path):
    path = key_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("not a key")
    path.chmod(0o600)
    with pytest.raises(SigningKeyError, match="not a PKCS#8 PEM private key"):
        load_or_create_key(tmp_path)


def test_processes_creating_the_key_at_once_end_up_with_one_key(tmp_path):
    gate = tmp_path / "go"
    code = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from nabat.evidence.keys import load_or_create_key
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.001)
        print(load_or_create_key(Path({str(tmp_path)!r})).public_key)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    time.sleep(0.5)  # all of them imported and waiting
    gate.touch()
    keys = {proc.communicate(timeout=30)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(keys) == 1 and "" not in keys
    assert keys == {load_or_create_key(tmp_path).public_key}
    assert sorted(p.name for p in key_path(tmp_path).parent.iterdir()) == ["signing-key.pem"]


def test_nabat_evidence_key_prints_the_configured_hubs_key(tmp_path):
    (tmp_path / "plugins.toml").write_text('[hub]\nlanguage = "en"\ndata_dir = "state"\n')
    done = run_cli("evidence", "key", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    key = load_or_create_key(tmp_path / "state")
    assert f"public key:  {key.public_key}" in done.stdout
    assert f"fingerprint: {key.fingerprint}" in done.stdout
    Path(tmp_path / "state" / "evidence" / "signing-key.pem").chmod(0o640)
    refused = run_cli("evidence", "key", cwd=tmp_path)
    assert refused.returncode == 1 and "may be read by others" in refused.stderr
