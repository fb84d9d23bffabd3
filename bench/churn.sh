#!/usr/bin/env bash
# Churn for the soak and the benchmarks, for $1 seconds: short processes, O_DIRECT writes from
# new processes (one biotop instance each), short loopback TCP sessions from new processes
# (one tcplife instance each). Loopback only.
set -u
secs=${1:-60}
end=$((SECONDS + secs))
dir=$(mktemp -d /var/tmp/bcc-churn.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
/usr/bin/python3 - "$dir/port" <<'PY' &
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(128)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
def serve(c):
    while c.recv(65536): pass
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
for _ in $(seq 50); do [ -s "$dir/port" ] && break; sleep 0.1; done
port=$(cat "$dir/port")
while ((SECONDS < end)); do
    for _ in $(seq 20); do /bin/true & done
    dd if=/dev/zero of="$dir/io" bs=64k count=8 oflag=direct status=none &
    /usr/bin/python3 -c "import socket; s=socket.create_connection(('127.0.0.1', $port)); s.sendall(b'x'*10000); s.close()" &
    wait
    sleep 0.2
done
