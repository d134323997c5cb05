# Shared by the bench scripts, sourced from the repository root first: the build to run (`bin`,
# built by `build`) and the smoke mode; a check that nothing already
# listens where a script will serve (a leftover server would answer in its place), a bounded
# wait for a server to come up, leadscore started on a scratch configuration, a scratch
# directory, and a cleanup at exit that stops every process the script started (its pid in
# `pids`), calls the script's own `bench_cleanup` if it has one, and removes the scratch
# directory.
#
# The scripts serve on fixed ports below 32768, outside Linux's ephemeral range: a port in it
# may be held by a client connection, or its TIME_WAIT, from the test suite run just before,
# and a server cannot bind it then.

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

# Runs "$@" until it succeeds while process $1 (a server the script started) runs. If that
# process stopped (its port taken, its configuration refused) or ten minutes pass, the script
# fails, showing the server's log.
until_up() {
    local pid=$1 deadline=$((SECONDS + 600))
    shift
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS > deadline)); then
            echo "gave up on: $* (process $pid $(kill -0 "$pid" 2>/dev/null && echo 'runs' || echo 'stopped'))" >&2
            if [ -f "$work/serve.log" ]; then sed '/^Stack backtrace:/q' "$work/serve.log" | tail -n 15 >&2; fi
            exit 1
        fi
        sleep 0.5
    done
}

# Waits until ADDR listens, while process PID (default: the leadscore of `serve`) runs.
wait_for() { until_up "${2:-$serving}" listening "$1"; }

# Starts leadscore ($LEADSCORE_BIN, or the one in $bin; another build needs its scorer libraries
# beside it, or every claim finds nothing to score) on $LEADSCORE_ADDR with $WORKERS
# runtime threads and its data in $work/data, logging to $work/serve.log; each argument is one
# more [store] line (`serve 'fsync = "always"'`). The console and the metrics port stay off
# unless the arguments have their sections. Its pid goes in `serving` and in `pids`.
serve() {
    {
        printf '[server]\nlisten = "%s"\nworker_threads = %s\n' "$LEADSCORE_ADDR" "$WORKERS"
        printf '[store]\ndata_dir = "%s"\n' "$work/data"
        printf '%s\n' "$@"
        for section in console metrics; do
            case " $* " in *"[$section]"*) ;; *) printf '[%s]\nlisten = ""\n' "$section" ;; esac
        done
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
