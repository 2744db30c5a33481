import sys

from rtsr.cli import main

sys.exit(main())
