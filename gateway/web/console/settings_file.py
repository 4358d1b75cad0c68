"""The console's province data (config/console.toml): map tiles, canned replies, hazard names,
and the ward list that names a place for a pair of coordinates."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from gateway.domain.duplicates import haversine_m
from gateway.domain.texts import config_dir


@dataclass(frozen=True)
class Ward:
    """A ward (phường/xã) by its centre and the radius it covers."""

    name: str
    unit: str
    lat: float
    lon: float
    radius_m: float


@dataclass(frozen=True)
class ConsoleConfig:
    """What config/console.toml says."""

    tile_url: str
    attribution: str
    zoom: int
    canned: tuple[tuple[str, str], ...]  # (messages key under [canned], label)
    hazards: dict[str, str]
    wards: tuple[Ward, ...]

    def ward_at(self, lat: float | None, lon: float | None) -> Ward | None:
        """The nearest ward whose radius covers the point, if any."""
        if lat is None or lon is None:
            return None
        best: tuple[float, Ward] | None = None
        for ward in self.wards:
            d = haversine_m(lat, lon, ward.lat, ward.lon)
            if d <= ward.radius_m and (best is None or d < best[0]):
                best = (d, ward)
        return best[1] if best else None

    def hazard(self, code: str) -> str:
        """The hazard's Vietnamese name."""
        return self.hazards.get(code, "Tình huống khẩn cấp")


def parse(data: dict[str, Any]) -> ConsoleConfig:
    """Build the config from a parsed console.toml (defaults for what is missing)."""
    m = data.get("map", {})
    return ConsoleConfig(
        tile_url=str(m.get("tile_url", "https://tile.openstreetmap.org/{z}/{x}/{y}.png")),
        attribution=str(m.get("attribution", "© OpenStreetMap")),
        zoom=int(m.get("zoom", 17)),
        canned=tuple((str(c["key"]), str(c.get("label", c["key"])))
                     for c in data.get("canned", [])),
        hazards={str(k): str(v) for k, v in data.get("hazards", {}).items()},
        wards=tuple(Ward(str(w["name"]), str(w.get("unit", "")), float(w["lat"]),
                         float(w["lon"]), float(w.get("radius_m", 2000)))
                    for w in data.get("wards", [])),
    )


@lru_cache(maxsize=8)
def load(directory: Path | None = None) -> ConsoleConfig:
    """Read console.toml from the province's config directory (packaged default otherwise)."""
    path = config_dir(directory) / "console.toml"
    if not path.exists():
        path = config_dir(None) / "console.toml"
    with path.open("rb") as fh:
        return parse(tomllib.load(fh))
