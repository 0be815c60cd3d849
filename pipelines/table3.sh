#!/bin/bash
# The paper's Table 3: ResNet-32 on CIFAR-10 (all 50,000 training images, the 10,000 test
# images), baseline vs ICN, with and without data augmentation. All flags of
# pipelines/resnet-table.sh (--data-dir, --seeds, --dir, --quick, -- TRAINER FLAGS, ...).
#   pipelines/table3.sh [--data-dir DIR] [--dir runs/table3] [--quick] [...]
here=$(cd "$(dirname "$0")" && pwd)
case ${1:-} in -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exec "$here/resnet-table.sh" --help ;; esac
exec "$here/resnet-table.sh" --dataset cifar10 --variants "aug plain" --dir runs/table3 "$@"
