#!/usr/bin/env bash
# A real A1111 v1.10.1 WebUI with this checkout installed as an extension, for tests/a1111 (locally and in CI).
#
#   bash tools/a1111_rig.sh test [pytest args]   build, start, run tests/a1111 against it, stop (one command)
#   bash tools/a1111_rig.sh build                build or refresh everything below; idempotent, seconds when warm
#   bash tools/a1111_rig.sh start                build, then start the WebUI in the background; prints its URL
#   bash tools/a1111_rig.sh stop                 stop the WebUI that `start` started
#
# Built offline from ../shared/a1111/ (A1111 and the repositories its launcher would clone, openai/CLIP; see its
# README) plus PyPI, into a cache outside the clone ($A1111_RIG_HOME, default /var/tmp/cn-a1111-rig; no folder of its
# path may start with a dot, for gradio answers 403 for any file under one, A1111's own scripts and styles included):
#   src/      the unpacked sources (webui/, CLIP/)
#   extension/sd-webui-controlnet   a copy of this checkout, linked into the data dir's extensions/ at each start
#   venv/     the WebUI's own venv: torch 2.14.1 + torchvision 0.29.1 (an importable pair that runs on the CPU),
#             A1111's pins, CLIP; plus what our install.py adds, run the way A1111's launcher runs it
#   hf/       HF_HOME with the offline CLIP tokenizer entry (tools/a1111_rig_tokenizer.py)
#   models/   --models-dir: random-weight models in the published layouts (tools/a1111_rig_models.py; to add a
#             model, add one @model entry there: the next build makes it, later builds keep it)
#   run/      one instance's data dir (fresh at every start), its log, pid and URL
#   hash-cache/  A1111's checkpoint hash cache (SD_WEBUI_CACHE_DIR), kept between starts: the SDXL checkpoint's
#             sha256 takes ~15 s
# Next to ours, start() installs tools/a1111_rig_probe (a second extension, for the rig only): GET /cn-rig/model_state
# shows tests/a1111 the loaded model's modules, hooks and weights. The annotator folder is models/annotators
# (--controlnet-annotator-models-path), so the models maker's encoders (clip_vision/) survive a rebuild.
# Each step writes a stamp when it has finished and is redone when its inputs change or its stamp is missing.
#
# Environment: A1111_RIG_HOME (cache), A1111_SOURCES (folder with the archive), A1111_RIG_PYTHON (a Python 3.11),
# A1111_RIG_THREADS (OMP/torch threads of the WebUI; default 1), A1111_RIG_START_TIMEOUT (seconds, default 900),
# A1111_RIG_ARGS (more WebUI flags, e.g. --medvram-sdxl), A1111_RIG_CKPT (the checkpoint to start with, relative to
# models/Stable-diffusion; default the SD1.5 one that tests/a1111 expects),
# PYTHON (the interpreter with pytest and playwright for `test`; default .venv/bin/python of the checkout).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RIG=${A1111_RIG_HOME:-/var/tmp/cn-a1111-rig}
SOURCES=${A1111_SOURCES:-$ROOT/../shared/a1111}
ARCHIVE=$SOURCES/a1111-v1.10.1-sources.tar.gz
RIG_PY=${A1111_RIG_PYTHON:-python3.11}
THREADS=${A1111_RIG_THREADS:-1}
START_TIMEOUT=${A1111_RIG_START_TIMEOUT:-900}
WEBUI=$RIG/src/webui
VENV=$RIG/venv
VPY=$VENV/bin/python
EXT_NAME=sd-webui-controlnet
EXT=$RIG/extension/$EXT_NAME
RUN=$RIG/run
TORCH_PAIR="torch==2.14.1 torchvision==0.29.1"
# A1111's requirements_versions.txt installs under these (../shared/a1111/README.md, "pins"): the versions its
# code and the packages it pins work with, and setuptools >= 77 for torch but < 81 for pkg_resources.
CONSTRAINTS="numpy==1.26.2
protobuf==3.20.0
huggingface_hub<1
mediapipe<0.10.30
timm<=0.9.5
pydantic<=1.10.17
setuptools>=77,<81"

say() { echo "[a1111-rig] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
sha() { sha256sum | cut -c1-16; }

case $RIG in
  /*) ;;
  *) RIG=$PWD/$RIG ;;
esac
case $RIG/ in
  */.*) die "A1111_RIG_HOME=$RIG has a folder starting with '.': gradio would refuse (403) to serve the WebUI's own scripts from it" ;;
esac

# One rig at a time per cache: the build steps and the running instance share its folders (and one WebUI
# holds ~8.4 GB). A second caller waits for the first, at most A1111_RIG_LOCK_WAIT seconds.
lock() {
  mkdir -p "$RIG"
  exec 9>"$RIG/.lock"
  flock -w "${A1111_RIG_LOCK_WAIT:-3600}" 9 || die "another rig holds $RIG/.lock (waited ${A1111_RIG_LOCK_WAIT:-3600} s)"
}

# ------------------------------------------------------------------------------------------------ build
unpack() {
  [ -f "$ARCHIVE" ] || die "no A1111 sources at $ARCHIVE (set A1111_SOURCES to the folder of ../shared/a1111)"
  local want; want=$(sha <"$ARCHIVE")
  stamp_ok "$RIG/src/.stamp" "$want" && return
  say "unpacking $ARCHIVE"
  rm -rf "$RIG/src" && mkdir -p "$RIG/src"
  tar -xzf "$ARCHIVE" -C "$RIG/src"
  [ -f "$WEBUI/launch.py" ] && [ -d "$RIG/src/CLIP" ] || die "the archive did not unpack to webui/ and CLIP/"
  echo "$want" >"$RIG/src/.stamp"
}

# pip, without the warnings this machine's pip config prints for every local index folder a package lacks
pip_install() {
  "$VPY" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

venv() {
  local reqs want
  # requirements_versions.txt without its setuptools and torch lines (both come from elsewhere, see above)
  reqs=$(grep -v -E '^(setuptools|torch)([=<> ]|$)' "$WEBUI/requirements_versions.txt")
  want=$( (cat "$RIG/src/.stamp"; "$RIG_PY" --version; echo "$TORCH_PAIR"; echo "$CONSTRAINTS"; echo "$reqs") | sha)
  stamp_ok "$VENV/.stamp" "$want" && return
  command -v "$RIG_PY" >/dev/null || die "$RIG_PY not found (torch 2.14.1 is installed as a cp311 wheel; set A1111_RIG_PYTHON)"
  say "building the WebUI venv in $VENV (torch from this machine's wheels, A1111's pins from PyPI: minutes)"
  rm -rf "$VENV"
  "$RIG_PY" -m venv "$VENV"
  echo "$CONSTRAINTS" >"$VENV/constraints.txt"
  echo "$reqs" >"$VENV/requirements.txt"
  local pip=(pip_install)
  "${pip[@]}" -c "$VENV/constraints.txt" setuptools wheel
  # shellcheck disable=SC2086
  "${pip[@]}" -c "$VENV/constraints.txt" $TORCH_PAIR
  "${pip[@]}" -c "$VENV/constraints.txt" -r "$VENV/requirements.txt" $TORCH_PAIR
  "${pip[@]}" -c "$VENV/constraints.txt" --no-build-isolation "$RIG/src/CLIP"
  "$VPY" - <<'EOF' || die "the WebUI venv cannot run torch + torchvision on the CPU"
import torch, torchvision
from torchvision.ops import nms
assert torch.__version__.startswith("2.14.1"), torch.__version__
nms(torch.rand(4, 4) * 8, torch.rand(4), 0.5)
EOF
  echo "$want" >"$VENV/.stamp"
}

tokenizer() {
  "$VPY" "$ROOT/tools/a1111_rig_tokenizer.py" "$RIG/hf"
}

models() {
  PYTHONPATH="$WEBUI/repositories/stable-diffusion-stability-ai:$WEBUI/repositories/generative-models${PYTHONPATH:+:$PYTHONPATH}" \
    HF_HOME="$RIG/hf" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=2 PYTHONWARNINGS=ignore \
    "$VPY" "$ROOT/tools/a1111_rig_models.py" --webui "$WEBUI" --models-dir "$RIG/models"
}

# This checkout as an installed extension: a copy of its files (tracked ones, and untracked ones git does not
# ignore), so no .venv, weights or caches of the clone come along; then our install.py the way A1111's launcher
# runs it (the WebUI's python, cwd webui/, webui/ on PYTHONPATH). With --data-dir, A1111 loads extensions from
# DATA/extensions/, so start() links the copy there.
extension() {
  local dest=$EXT
  rm -rf "$dest" && mkdir -p "$dest"
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
     [ -e "$f" ] && printf '%s\0' "$f"; done | tar --null -T - -cf -) | tar -xf - -C "$dest"
  [ -f "$dest/scripts/controlnet.py" ] || die "copying the extension into $dest failed"
  say "installing the extension: $dest (its install.py)"
  (cd "$WEBUI" && PYTHONPATH="$WEBUI${PYTHONPATH:+:$PYTHONPATH}" "$VPY" "$dest/install.py" \
     2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)) || die "the extension's install.py failed"
}

build() {
  local t0=$SECONDS
  unpack
  venv
  tokenizer
  models
  extension
  say "built in $((SECONDS - t0)) s ($RIG)"
}

# ------------------------------------------------------------------------------------------------ start / stop
free_port() {
  "$VPY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

http_code() { curl -s -o /dev/null -m 10 -w '%{http_code}' "$1" || true; }

show_log() {
  [ -f "$RUN/webui.log" ] || return 0
  say "---- last 150 lines of the WebUI log ($RUN/webui.log) ----"
  tail -n 150 "$RUN/webui.log" >&2 || true
  say "---- end of the WebUI log ----"
}

running() { [ -f "$RUN/pid" ] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null; }

idle() {
  if running; then die "a WebUI of this rig already runs (pid $(cat "$RUN/pid")); bash tools/a1111_rig.sh stop"; fi
}

start() {
  local port url ckpt t0=$SECONDS
  port=$(free_port)
  url=http://127.0.0.1:$port
  ckpt=$(cat "$RIG/models/checkpoint.txt")
  if [ -n "${A1111_RIG_CKPT:-}" ]; then ckpt=$RIG/models/Stable-diffusion/$A1111_RIG_CKPT; fi
  [ -f "$ckpt" ] || die "no checkpoint $ckpt"
  rm -rf "$RUN" && mkdir -p "$RUN/data/extensions"
  ln -s "$EXT" "$RUN/data/extensions/$EXT_NAME"
  ln -s "$EXT/tools/a1111_rig_probe" "$RUN/data/extensions/cn-rig-probe"
  say "starting the WebUI on $url (log: $RUN/webui.log)"
  # setsid: the WebUI leads its own process group, so stop() ends it and all its children at once.
  (cd "$WEBUI" && exec env HF_HOME="$RIG/hf" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
     SD_WEBUI_CACHE_FILE="$RIG/hash-cache.json" SD_WEBUI_CACHE_DIR="$RIG/hash-cache" \
     OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" \
     GRADIO_ANALYTICS_ENABLED=False PYTHONUNBUFFERED=1 \
     setsid "$VPY" launch.py --skip-prepare-environment --skip-install --skip-torch-cuda-test --skip-version-check \
     --use-cpu all --no-half --no-half-vae --precision full --api --server-name 127.0.0.1 --port "$port" \
     --data-dir "$RUN/data" --models-dir "$RIG/models" --ckpt "$ckpt" --no-download-sd-model \
     --do-not-download-clip --disable-console-progressbars --controlnet-annotator-models-path "$RIG/models/annotators" \
     ${A1111_RIG_ARGS:-} </dev/null >"$RUN/webui.log" 2>&1 9>&-) &
  echo $! >"$RUN/pid"
  echo "$url" >"$RUN/url"
  # Ready when our routes answer (they register after /sdapi) and the checkpoint has loaded (a 1-step txt2img).
  # No request before the log's "Startup time:": A1111 serves HTTP before it adds its API middleware, and a request
  # in between makes starlette refuse the middleware ("Cannot add middleware after an application has started").
  local step=startup code sdapi=
  while :; do
    running || { show_log; die "the WebUI exited during start-up (after $((SECONDS - t0)) s)"; }
    [ $((SECONDS - t0)) -lt "$START_TIMEOUT" ] || {
      show_log; stop; die "the WebUI was not ready after $START_TIMEOUT s (waiting for: $step)"; }
    if [ $step = startup ]; then
      grep -q "^Startup time:" "$RUN/webui.log" && step=routes
    elif [ $step = routes ]; then
      if [ "$(http_code "$url/controlnet/version")" = 200 ]; then
        say "our routes answer after $((SECONDS - t0)) s"; step=model
      elif [ -z "$sdapi" ] && [ "$(http_code "$url/sdapi/v1/options")" = 200 ]; then
        sdapi=$SECONDS
      elif [ -n "$sdapi" ] && [ $((SECONDS - sdapi)) -gt "${A1111_RIG_ROUTES_WAIT:-120}" ]; then
        show_log; stop
        die "the WebUI's /sdapi answers but /controlnet/version still not after ${A1111_RIG_ROUTES_WAIT:-120} s: the extension did not load (see the log above)"
      fi
    else
      code=$(curl -s -o "$RUN/warmup.json" -m "$START_TIMEOUT" -w '%{http_code}' -H 'Content-Type: application/json' \
        -d '{"prompt": "warm-up", "steps": 1, "width": 64, "height": 64, "seed": 1}' "$url/sdapi/v1/txt2img" || true)
      if [ "$code" = 200 ]; then break; fi
      show_log; stop
      die "the WebUI's first txt2img failed (HTTP $code): $(head -c 1500 "$RUN/warmup.json" 2>/dev/null)"
    fi
    sleep 2
  done
  say "ready: $url (checkpoint loaded, one txt2img made) after $((SECONDS - t0)) s"
  echo "$url"
}

stop() {
  [ -f "$RUN/pid" ] || return 0
  local pid; pid=$(cat "$RUN/pid")
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping the WebUI (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/pid"
}

# ------------------------------------------------------------------------------------------------ test
run_tests() {
  local py=${PYTHON:-$ROOT/.venv/bin/python} url t0 rc=0
  [ -x "$py" ] || die "no test interpreter at $py (bash tools/bootstrap.sh makes .venv; or set PYTHON)"
  trap 'rc=$?; stop; exit $rc' EXIT
  trap 'exit 130' INT TERM
  url=$(start)
  t0=$SECONDS
  say "running tests/a1111 against $url"
  # A1111_REQUIRE: here every skip of tests/a1111 is a failure (tests/a1111/conftest.py), for the rig has it all.
  (cd "$ROOT" && A1111_URL="$url" A1111_REQUIRE=1 A1111_CN_MODEL="${A1111_CN_MODEL:-control_v11p_sd15_canny}" \
     "$py" -m pytest -q tests/a1111 -p no:cacheprovider "$@") || rc=$?
  say "tests/a1111 took $((SECONDS - t0)) s (exit $rc)"
  if [ "$rc" -ne 0 ]; then show_log; fi
  return "$rc"
}

cmd=${1:-test}
[ $# -gt 0 ] && shift
case $cmd in
  build) lock; build ;;
  start) lock; idle; build; start ;;
  stop) stop ;;
  test) lock; idle; build; run_tests "$@" ;;
  step) lock; for s in "$@"; do "$s"; done ;;  # single build steps, e.g. `step models extension`
  *) die "usage: bash tools/a1111_rig.sh [test [pytest args] | build | start | stop]" ;;
esac
