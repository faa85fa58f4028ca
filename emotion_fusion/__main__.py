"""`python -m emotion_fusion ...` — see cli.py."""
import sys

from .cli import main

sys.exit(main())
