"""`python -m gateway` is the `paht` command."""

from gateway.cli import main

main()
