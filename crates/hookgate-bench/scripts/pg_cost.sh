#!/bin/sh
# What a gate-postgres run costs PostgreSQL per event, in numbers that do not depend on
# how fast the machine is: transactions committed, WAL flushes (pg_stat_wal.wal_sync), WAL
# bytes written (pg_stat_wal.wal_bytes: the rows and index entries the events cost), and
# the CPU time of the server's processes (the postmaster's own and its reaped children's,
# plus its live children's).
#
#   crates/hookgate-bench/scripts/pg_cost.sh DATADIR URL hookgate-load ARGS...
#
# DATADIR is the cluster's data directory (for the postmaster's pid); URL a superuser URL
# of the database the load runs against, passed on as --postgres URL (it may carry the
# store's settings, e.g. ?max_batch=1). Run one setup (gate-postgres) per call: events are
# counted as inserted rows over 2 (an event row and a dedup row each; each run's schema
# adds a few hundred catalog rows, under 1 % of a 5 s run).
set -eu
datadir=$1
url=$2
shift 2
driver_url=$(printf '%s' "$url" | sed 's/?.*//')
pm=$(head -1 "$datadir/postmaster.pid")
cpu() {
  own=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat")
  kids=0
  for c in $(cat /proc/"$pm"/task/*/children 2>/dev/null); do
    k=$(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0)
    kids=$((kids + k))
  done
  echo $((own + kids))
}
stats() {
  psql -X -A -t -d "$driver_url" \
    -c "SELECT pg_stat_clear_snapshot()" \
    -c "SELECT xact_commit, tup_inserted FROM pg_stat_database WHERE datname = current_database()" \
    -c "SELECT wal_sync, wal_bytes FROM pg_stat_wal" | tail -2 | tr '|\n' '  '
}
b_cpu=$(cpu)
b=$(stats)
"$@" --postgres "$url"
# Let the store's sessions exit and flush their statistics.
sleep 3
a_cpu=$(cpu)
a=$(stats)
echo "$b $b_cpu $a $a_cpu $(getconf CLK_TCK)" | awk '{
  events = ($7 - $2) / 2; commits = $6 - $1; syncs = $8 - $3; wal = $9 - $4;
  cpu = ($10 - $5) / $11;
  printf "events %d  commits/event %.3f  WAL flushes/event %.3f  WAL bytes/event %.0f  server CPU %.1f s = %.0f µs/event\n",
    events, commits / events, syncs / events, wal / events, cpu, cpu * 1e6 / events }'
