import sys

from groupbuy.cli import main

sys.exit(main())
