import sys

from audioclf.cli import main

sys.exit(main())
