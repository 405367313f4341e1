# Sourced by scripts/test and scripts/chaos (after _env.sh): install and start PostgreSQL on 127.0.0.1
# if it is not answering, with trust for local connections as the test suite expects.
ensure_postgres() {
    if python - <<'PY' 2>/dev/null; then return 0; fi
import psycopg; psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres connect_timeout=3").close()
PY
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        echo "installing PostgreSQL from Debian's packages" >&2
        as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
        hba="$(ls /etc/postgresql/*/main/pg_hba.conf)"
        as_root sed -i 's/^\(host.*127.0.0.1\/32\s*\)\S*$/\1trust/; s/^\(local\s*all\s*postgres\s*\)\S*$/\1trust/' "$hba"
    fi
    echo "starting PostgreSQL" >&2
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 30); do
        python - <<'PY' 2>/dev/null && return 0
import psycopg; psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres connect_timeout=2").close()
PY
        sleep 1
    done
    echo "PostgreSQL does not answer on 127.0.0.1:5432" >&2
    return 1
}
