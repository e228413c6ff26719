import sys

from gram_cli import main

sys.exit(main())
