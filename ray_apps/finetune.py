"""Fine-tune a model on the lake's task tables with Ray Train (Train V2).

    python ray_apps/finetune.py --config conf/train/tiny-cpu.yaml [--set key=value ...]
    ray job submit --address http://127.0.0.1:8265 -- python ray_apps/finetune.py --config ...

All logic lives in ``trialpanorama.train``; this file only parses arguments.
"""

from __future__ import annotations

import sys

from trialpanorama.train.run import main

if __name__ == "__main__":
    sys.exit(main())
