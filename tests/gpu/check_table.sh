# Sourced by the GPU check scripts: `check NAME LOG COMMAND...` runs a command with its output in LOG and adds a
# row (name, ok or the exit code, seconds) to the table that `print_table` prints last.
declare -a rows
check() {
  local name=$1 log=$2; shift 2
  local t0=$SECONDS
  "$@" >"$log" 2>&1
  local rc=$?
  rows+=("$(printf '%-46s %-7s %5ss' "$name" "$([ $rc = 0 ] && echo ok || echo "rc=$rc")" "$((SECONDS - t0))")")
  return $rc
}
print_table() { echo; printf '%s\n' "${rows[@]}"; }
