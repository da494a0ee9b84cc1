"""``python -m filesim.sync`` runs the agent's CLI."""

from filesim.sync.cli import main

raise SystemExit(main())
