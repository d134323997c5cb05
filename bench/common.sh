# Shared by the bench scripts, sourced from the repository root first: the build to run (`bin`,
# built by `build`) and the smoke mode; a check that nothing already
# listens where a script will serve (a leftover server would answer in its place), a wait for
# a server to listen, leadscore started on a scratch configuration, a scratch directory, and a
# cleanup at exit that stops every process the script started (its pid in `pids`), calls the
# script's own `bench_cleanup` if it has one, and removes the scratch directory.

# SMOKE=1 runs a script to its end on tiny data, one second a step, with the debug build: CI
# runs every script so, that one that stops working fails CI. Its figures mean nothing; figures
# come from full runs only.
if [ "${SMOKE:-}" = 1 ]; then
    : "${LEADS:=2000}" "${AGENTS:=20}" "${SESSIONS:=4}" "${ROUNDS:=1}" "${SECONDS_EACH:=1}"
    bin=target/debug
    build() { cargo build -q; }
else
    bin=target/release
    build() { cargo build --release -q; }
fi

listening() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

refuse_taken() {
    for addr in "$@"; do
        if listening "$addr"; then
            echo "$addr is taken: stop what listens there first" >&2
            exit 1
        fi
    done
}

wait_for() { until listening "$1"; do sleep 0.2; done; }

# Starts leadscore ($LEADSCORE_BIN, or the one in $bin) on $LEADSCORE_ADDR with $WORKERS
# runtime threads and its data in $work/data, logging to $work/serve.log; each argument is one
# more [store] line (`serve 'fsync = "always"'`). Its pid goes in `serving` and in `pids`.
serve() {
    {
        printf '[server]\nlisten = "%s"\nworker_threads = %s\n' "$LEADSCORE_ADDR" "$WORKERS"
        printf '[store]\ndata_dir = "%s"\n' "$work/data"
        printf '%s\n' "$@"
    } >"$work/leadscore.toml"
    "${LEADSCORE_BIN:-$bin/leadscore}" serve --config "$work/leadscore.toml" >"$work/serve.log" 2>&1 &
    serving=$!
    pids+=("$serving")
}

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if declare -F bench_cleanup >/dev/null; then bench_cleanup; fi
    rm -rf "$work"
}
trap cleanup EXIT
