"""Launch the SoM chat app: `python demo_gpt4v_som.py [--port 7861] [--segmenter mobile-sam] ...`.

Set OPENAI_API_KEY (and OPENAI_BASE_URL / SOM_MODEL for other endpoints) first, or type them
in the page's LLM settings. Same as `som chat`.
"""

import sys

from som.app.chat_cli import main

if __name__ == "__main__":
    sys.exit(main())
