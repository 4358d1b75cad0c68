"""`paht models download vi --from FILE_OR_URL`: a local zip/tar or a mirror, checked first.

The archives are built here: a directory with the files a Vosk model has (the layout check,
not a real model). Mirrors are an aiohttp test server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.cli import main

MODEL = "vosk-model-small-vn-0.4"
FILES = ("am/final.mdl", "conf/model.conf", "graph/HCLr.fst", "README")
PREFIX = "paht models download: "


def model_zip(top: str = MODEL, files: tuple[str, ...] = FILES, extra: str | None = None) -> bytes:
    """A zip shaped like a Vosk model release."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in files:
            zf.writestr(f"{top}/{name}", f"fake {name}\n" * 500)
        if extra:
            zf.writestr(extra, "x")
    return buf.getvalue()


def model_tar(top: str = MODEL, symlink: bool = False) -> bytes:
    """A .tar.gz shaped like a Vosk model (how some mirrors repackage it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name in FILES:
            data = f"fake {name}\n".encode() * 500
            info = tarfile.TarInfo(f"./{top}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if symlink:
            link = tarfile.TarInfo(f"{top}/am/passwd")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(link)
    return buf.getvalue()


def run_cli(*args: str) -> int:
    """Run `paht` in process; its exit code."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return int(exit_info.value.code or 0)


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in list(os.environ):
        if name.startswith("PAHT_"):
            monkeypatch.delenv(name)


def installed(dest: Path) -> list[str]:
    """Visible entries of the models directory (temp dirs are dot-named and must be gone too)."""
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_from_a_local_archive(kind: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    data = model_zip() if kind == "zip" else model_tar()
    archive = tmp_path / f"copied-from-usb.{kind}"
    archive.write_bytes(data)
    dest = tmp_path / "models"
    digest = hashlib.sha256(data).hexdigest()
    assert run_cli("models", "download", "vi", "--from", str(archive), "--dest", str(dest),
                   "--sha256", digest) == 0
    captured = capsys.readouterr()
    model = dest / MODEL
    assert captured.out.strip() == str(model)
    assert (model / "am" / "final.mdl").read_text().startswith("fake am/final.mdl")
    assert "100%" in captured.err and "verified" in captured.err
    assert f"PAHT_VOSK_MODEL={model}" in captured.err
    assert installed(dest) == [MODEL]
    assert archive.is_file()  # the operator's copy is left alone


@pytest.fixture
async def mirror() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    """An HTTP mirror on 127.0.0.1 serving the bytes put in its dict under /models/NAME."""
    files: dict[str, bytes] = {}

    async def serve(request: web.Request) -> web.Response:
        body = files.get(request.match_info["name"])
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/models/{name}", serve)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/models/")), files
    finally:
        await server.close()


@pytest.mark.parametrize("style", ["archive-url", "mirror-directory"])
async def test_from_a_mirror(style: str, mirror: tuple[str, dict[str, bytes]], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    base, files = mirror
    files[f"{MODEL}.zip"] = model_zip()
    files["repacked.tar.gz"] = model_tar()
    url = base + "repacked.tar.gz" if style == "archive-url" else base
    dest = tmp_path / "models"
    # urllib blocks: run the command in a thread so the mirror's loop keeps serving.
    code = await asyncio.to_thread(run_cli, "models", "download", "vi", "--from", url,
                                   "--dest", str(dest))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (dest / MODEL / "conf" / "model.conf").is_file()
    assert "(no published checksum)" in captured.err
    assert installed(dest) == [MODEL]


def assert_one_line_error(err: str, needle: str) -> None:
    """Exactly one `paht models download: ...` line naming `needle`, no traceback."""
    errors = [line for line in err.splitlines() if line.startswith(PREFIX)]
    assert len(errors) == 1 and needle in errors[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"PK\x03\x04 truncated", "neither a zip nor a tar"),
        (model_zip()[:-200], "zip"),
        (model_tar()[:-100], "tar"),
        (model_zip(extra="../evil.sh"), "unexpected archive member"),
        (model_zip(top="some-other-model"), "unexpected archive member"),
        (model_zip(files=("README", "graph/HCLr.fst")), "not a Vosk model"),
        (model_tar(symlink=True), "links and devices are refused"),
        (b"", "neither a zip nor a tar"),
    ],
    ids=["garbage", "truncated-zip", "truncated-tar", "zip-slip", "wrong-top", "no-model-files",
         "tar-symlink", "empty"],
)
def test_a_bad_local_archive_installs_nothing(payload: bytes, needle: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "model.bin"
    archive.write_bytes(payload)
    dest = tmp_path / "models"
    assert run_cli("models", "download", "vi", "--from", str(archive), "--dest", str(dest)) == 1
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, needle)
    assert captured.out == ""
    assert installed(dest) == []


def test_bad_sources_are_one_line_errors(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "models"
    archive = tmp_path / "m.zip"
    archive.write_bytes(model_zip())
    cases = [
        (("--from", str(tmp_path / "absent.zip")), "no such file"),
        (("--from", "ftp://mirror.example/m.zip"), "refusing non-HTTP URL"),
        (("--from", str(archive), "--sha256", "0" * 64), "SHA-256 mismatch"),
        (("--from", str(tmp_path)), "no such file"),  # a directory is not an archive
    ]
    for extra, needle in cases:
        assert run_cli("models", "download", "vi", "--dest", str(dest), *extra) == 1
        assert_one_line_error(capsys.readouterr().err, needle)
        assert installed(dest) == []
    assert run_cli("models", "download", "klingon", "--from", str(archive),
                   "--dest", str(dest)) == 1
    assert_one_line_error(capsys.readouterr().err, "unknown model")


async def test_a_mirror_that_fails_installs_nothing(mirror: tuple[str, dict[str, bytes]],
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    base, files = mirror
    files["broken.zip"] = b"<html>captive portal</html>"
    dest = tmp_path / "models"
    for url, needle in ((base + "absent.zip", "404"), (base + "broken.zip", "neither a zip")):
        code = await asyncio.to_thread(run_cli, "models", "download", "vi", "--from", url,
                                       "--dest", str(dest))
        assert code == 1
        assert_one_line_error(capsys.readouterr().err, needle)
        assert installed(dest) == []


def test_the_console_script_takes_from(tmp_path: Path) -> None:
    archive = tmp_path / "m.zip"
    archive.write_bytes(model_zip())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAHT_")}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "models", "download", "vi", "--from", str(archive),
         "--dest", str(tmp_path / "models")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "models" / MODEL)
