#!/bin/bash
# The paper's Table 4: ResNet-32 on SVHN (train + extra, 604,388 images; the 26,032 test
# images), baseline vs ICN, no augmentation. All flags of pipelines/resnet-table.sh
# (--data-dir, --seeds, --dir, --quick, -- TRAINER FLAGS, ...).
#   pipelines/table4.sh [--data-dir DIR] [--dir runs/table4] [--quick] [...]
here=$(cd "$(dirname "$0")" && pwd)
case ${1:-} in -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exec "$here/resnet-table.sh" --help ;; esac
exec "$here/resnet-table.sh" --dataset svhn --variants plain --dir runs/table4 "$@"
