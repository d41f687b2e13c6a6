#!/usr/bin/env bash
# The services the tests need beyond the embedded PostgreSQL: RabbitMQ on 127.0.0.1:5672.
# If nothing listens there, start the machine's rabbitmq-server and wait up to 60 s for the port.
set -euo pipefail

host=127.0.0.1
port=5672

# bash's /dev/tcp, bounded by timeout(1) where it exists (a refused loopback port answers at once anyway).
listening() {
    local probe=(bash -c "exec 3<>/dev/tcp/$host/$port")
    if command -v timeout >/dev/null; then probe=(timeout 2 "${probe[@]}"); fi
    "${probe[@]}" 2>/dev/null
}

if listening; then
    echo "rabbitmq: listening on $host:$port"
    exit 0
fi
if ! command -v rabbitmq-server >/dev/null; then
    echo "rabbitmq: nothing on $host:$port and no rabbitmq-server on PATH;" \
         "install RabbitMQ or run: docker compose up -d rabbitmq" >&2
    exit 1
fi
echo "rabbitmq: starting rabbitmq-server -detached"
rabbitmq-server -detached
for _ in $(seq 60); do
    if listening; then
        echo "rabbitmq: listening on $host:$port"
        exit 0
    fi
    sleep 1
done
echo "rabbitmq: not listening on $host:$port after 60 s; see rabbitmq-server's log" >&2
exit 1
