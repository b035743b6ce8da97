"""`python -m babyllama` is the `babyllama` command."""

from .cli import main

raise SystemExit(main())
