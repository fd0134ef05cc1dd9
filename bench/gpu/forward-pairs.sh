#!/usr/bin/env bash
# The pairs forward configurations (fifth session's command): bench/gpu/forward-configs.sh with FWD_CONFIGS=pairs.
FWD_CONFIGS=pairs exec bash "$(dirname "$0")/forward-configs.sh" "$@"
