import sys

from mmssl.cli import main

sys.exit(main())
