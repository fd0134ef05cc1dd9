# Shell helpers of the decode session scripts (sourced, not run):
#   step NAME RC       a part's exit status and its seconds since t0
#   decode_run NAME SECS [VAR=VALUE ...] -- [bench/decode.mjs arguments]
#                      bench/decode.mjs into $OUT/NAME (.log beside it) under those variables,
#                      SECS at most, then its result rows (speeds without the api and err fields)
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
decode_rows() { grep -E "^(contiguous|paged|int8) |FAILED|ERROR" "$1" | sed -E 's/, api [0-9.]+ us//; s/ \(err [^)]*\)//; s/decode attention //g' | head -48; }
decode_run() {
  local name=$1 secs=$2 vars=()
  shift 2
  while [[ $# -gt 0 && $1 != -- ]]; do vars+=("$1"); shift; done
  [[ $# -gt 0 ]] && shift
  t0=$SECONDS
  env "${vars[@]}" timeout "$secs" node bench/decode.mjs --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  step "$name" $?
  decode_rows "$OUT/$name.log"
}
