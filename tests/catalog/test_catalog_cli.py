"""``polyn catalog`` and ``polyn catalog serve`` run as a user runs them, in subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import pytest
from catalog_support import ROOT, SHOP_APP

from polyn.cli import main

POLYN = str(Path(sysconfig.get_path("scripts")) / "polyn")


def environment() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POLYN_", "NATS_")) or key == "POLYN_NATS_SERVER"
    }
    return env


def polyn(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POLYN, *args], cwd=cwd, env=environment(), capture_output=True, text=True, timeout=60
    )


def test_catalog_reads_the_server_and_the_app(shop_url: str, tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = polyn("catalog", "--server", shop_url, "--app", SHOP_APP, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"Wrote the catalogue of 4 events (8 files) to {out}" in result.stdout
    assert result.stderr == ""
    index = (out / "index.html").read_text()
    assert "schema bucket POLYN_SCHEMAS" in index
    assert "streams and consumers from the server" in index
    assert "shop_order_placed_v1" in index
    # No domain was configured: the App's domain names the events.
    assert "com.acme.order.placed.v1" in (out / "events" / "order.placed.v1.html").read_text()


def test_catalog_offline_needs_no_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "site"
    # Nothing listens on port 1: the URL is only written into the document.
    args = ["--offline", "--server", "nats://127.0.0.1:1", "--domain", "com.acme"]
    assert main(["catalog", *args, "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    index = (out / "index.html").read_text()
    assert "streams and consumers from the migrations in migrations" in index
    assert '"host": "127.0.0.1:1"' in (out / "asyncapi.json").read_text()


def test_catalog_warns_about_declarations_it_cannot_match(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "order.placed.v1.json").write_text('{"type": "object"}')
    (tmp_path / "svc.py").write_text(
        "import polyn\n"
        "app = polyn.App(polyn.Config(domain='com.acme', source_root='web'), [],\n"
        "                publishes=['order.placed.v1', 'order.lost.v1'])\n"
    )
    result = polyn("catalog", "--offline", "--app", "svc:app", "--out", "site", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "polyn: warning: web declares that it sends order.lost.v1, which has no schema" in (
        result.stdout
    )


def test_a_missing_app_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["catalog", "--offline", "--app", "nowhere:app", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("polyn: error: Cannot import 'nowhere' for --app nowhere:app")
    assert "Traceback" not in err


def test_without_jinja2_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 now raises ImportError
    code = main(["catalog", "--offline", "--out", str(tmp_path / "site")])
    assert code == 1
    assert capsys.readouterr().err == (
        "polyn: error: polyn catalog needs Jinja2, which is not installed: "
        "pip install 'polyn[catalog]' (or pip install jinja2)\n"
    )
    assert not (tmp_path / "site").exists()


def test_serve_prints_the_url_serves_the_catalogue_and_stops_on_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["catalog", "--offline", "--domain", "com.acme", "--out", str(tmp_path)]) == 0
    server = subprocess.Popen(
        [POLYN, "catalog", "serve", "--dir", str(tmp_path), "--port", "0"],
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith(f"Serving the catalogue in {tmp_path} at http://127.0.0.1:")
        url = line.split(" at ", 1)[1].split(" ", 1)[0]
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert b"order.placed.v1" in response.read()
        with urllib.request.urlopen(url + "asyncapi.json", timeout=10) as response:
            assert response.headers["Content-Type"] == "application/json"
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=10)
    assert server.returncode == 0, err
    assert out.strip().endswith("Stopped")


def test_serve_without_a_catalogue_says_how_to_build_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["catalog", "serve", "--dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "There is no catalogue in" in err and "polyn catalog --out" in err
