"""``python -m gearshift`` runs the command-line interface."""

from gearshift.cli import main

raise SystemExit(main())
