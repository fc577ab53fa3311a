import os
import sys

# `python -m harness` puts the working directory first on sys.path, so a stray yaml.py or
# backends.py there would be imported, and run, in place of the real module: drop it.
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from harness.cli import main  # noqa: E402

raise SystemExit(main())
