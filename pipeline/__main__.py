"""``python -m pipeline --config edge.yaml`` is the same as ``squeezedet-edge``."""

import sys

from pipeline.daemon import main

if __name__ == "__main__":
    sys.exit(main())
