"""`python -m collabcoder.server`: the language server (same as `collab-server`)."""

import sys

from collabcoder.server.lsp.cli import main

if __name__ == "__main__":
    sys.exit(main())
