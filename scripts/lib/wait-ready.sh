# scripts/lib/wait-ready.sh: sourced by scripts/demo.sh and the integration tests.
# sg_wait_ready ADMIN_PORT PID: waits (up to 10 s) until the server's admin /healthz answers,
# then up to 3 s more for /readyz (tokens can be verified; a server whose identity management
# is unreachable on purpose is taken as started all the same). Returns 1 when PID died first
# or /healthz never answered.
sg_wait_ready() {
	for _ in $(seq 1 100); do
		if curl -sf "http://127.0.0.1:$1/healthz" >/dev/null 2>&1; then
			for _ in $(seq 1 30); do
				curl -sf "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && break
				sleep 0.1
			done
			return 0
		fi
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
