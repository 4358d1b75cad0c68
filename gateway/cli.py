"""The `paht` command line."""


def main() -> None:
    """Entry point (filled in below)."""
    raise SystemExit("not yet")
