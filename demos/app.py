"""Run the rt-anime Gradio demo from a checkout: ``python demos/app.py [rt-anime demo options]``.

The same as ``rt-anime demo``; the app itself lives in ``realtime/live/demo.py`` so the installed command works
without this folder. Hosting platforms that expect an ``app.py`` (e.g. a Space) can use this file as is.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realtime.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
