#!/usr/bin/env bash
# Draw every figure of the report with no interaction.
#   bash hw5.sh                       the embedded demo (synthetic data + committed checkpoint) into ./output/
#   bash hw5.sh <food_dir> <out_dir>  your Food-11 folder, with your checkpoint fetched by gdown
# Extra flags for main.py go in HW5_ARGS, e.g. HW5_ARGS="--arch hw5ta --device cuda".
set -euo pipefail

# Google Drive file id of your trained checkpoint: set it here (or export HW5_CHECKPOINT_ID).
CHECKPOINT_ID=""
# Optional sha256 of that file: the download is checked against it (or export HW5_CHECKPOINT_SHA256).
CHECKPOINT_SHA256=""

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -n "${PYTHON:-}" ]; then py="$PYTHON"
elif [ -x "$here/.venv/bin/python" ]; then py="$here/.venv/bin/python"
else py="$(command -v python3 || command -v python)"; fi
# Split HW5_ARGS at spaces only: no glob expansion (HW5_ARGS="--images *" passes the * to main.py).
set -f
# shellcheck disable=SC2206
extra=(${HW5_ARGS:-})
set +f

if [ $# -eq 0 ]; then
  exec "$py" "$here/main.py" --out ./output "${extra[@]}"
fi
if [ $# -ne 2 ]; then
  echo "usage: bash hw5.sh [<food_dir> <out_dir>]" >&2
  exit 2
fi
food_dir="$1"
out_dir="$2"
if [ ! -e "$food_dir" ]; then
  echo "hw5.sh: data not found (a Food-11 folder, a folder of images or one image): $food_dir" >&2
  exit 2
fi

if [ -n "${HW5_CHECKPOINT:-}" ]; then
  ckpt="$HW5_CHECKPOINT"
  if [ ! -f "$ckpt" ]; then
    echo "hw5.sh: HW5_CHECKPOINT=$ckpt is not a file" >&2
    exit 2
  fi
else
  id="${HW5_CHECKPOINT_ID:-$CHECKPOINT_ID}"
  if [ -z "$id" ]; then
    echo "hw5.sh: no checkpoint set: put your Google Drive file id in CHECKPOINT_ID at the top of hw5.sh (or export HW5_CHECKPOINT_ID=<id>, or HW5_CHECKPOINT=<local file>)" >&2
    exit 2
  fi
  cache="${HW5_CACHE:-$here/.cache/checkpoints}"
  ckpt="$cache/$id.pt"
  if [ ! -s "$ckpt" ]; then
    mkdir -p "$cache"
    tmp="$ckpt.part"
    rm -f "$tmp"
    # gdown 5+ takes the id (or URL) as its argument; it has no --id flag.
    if ! timeout "${HW5_DOWNLOAD_TIMEOUT:-55}" "$py" -m gdown --quiet "$id" -O "$tmp" >/dev/null 2>&1 || [ ! -s "$tmp" ]; then
      rm -f "$tmp"
      echo "hw5.sh: could not download checkpoint $id with gdown (no network, or the file is not shared publicly): download it yourself and run with HW5_CHECKPOINT=<file>" >&2
      exit 3
    fi
    mv "$tmp" "$ckpt"
  fi
fi

want="${HW5_CHECKPOINT_SHA256:-$CHECKPOINT_SHA256}"
if [ -n "$want" ]; then
  got="$("$py" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$ckpt")"
  if [ "$got" != "$want" ]; then
    if [ -n "${HW5_CHECKPOINT:-}" ]; then
      echo "hw5.sh: HW5_CHECKPOINT=$ckpt has sha256 $got, expected $want: check the file, or the sha256 you set" >&2
    else
      echo "hw5.sh: downloaded checkpoint $ckpt has sha256 $got, expected $want: delete it and rerun" >&2
    fi
    exit 2
  fi
fi

exec "$py" "$here/main.py" --data "$food_dir" --out "$out_dir" --checkpoint "$ckpt" "${extra[@]}"
