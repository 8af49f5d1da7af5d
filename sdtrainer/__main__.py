"""`python -m sdtrainer`: see sdtrainer/cli.py."""
import sys

from sdtrainer.cli import main

sys.exit(main())
