"""Launch the SoM toolbox: `python demo_som.py [--host H] [--port P] [--share]` (http://127.0.0.1:7860)."""

import sys

from som.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
