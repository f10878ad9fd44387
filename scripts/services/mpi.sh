#!/usr/bin/env bash
# Open MPI and MPICH side by side, and the mpi4py binary wheel in the given Python.
#   scripts/services/mpi.sh [PYTHON]      (PYTHON defaults to python3 on PATH; pass the venv's)
# Idempotent: install what is missing, make the MPICH ABI shim for mpi4py, smoke-test both
# launchers and mpi4py under both, print one OK line.
# Writes /etc/minipar-testbed/openmpi.env and mpich.env (NAME=VALUE lines) for tests:
#   openmpi.env: the OMPI_* variables that let Open MPI run as root with more ranks than cores
#   mpich.env:   MPI4PY_MPIABI=mpich and LD_LIBRARY_PATH=<dir with libmpi.so.12 -> libmpich.so.12>
set -euo pipefail

PY=${1:-python3}
ENV_DIR=/etc/minipar-testbed
SHIM_DIR=/opt/minipar-testbed/mpich-abi
PACKAGES=(openmpi-bin libopenmpi-dev mpich libmpich-dev)
STEP_TIMEOUT=${MPI_STEP_TIMEOUT:-120}

SCRIPT=mpi.sh
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || die "needs root (apt-get, /etc, /opt)"
take_lock
command -v "$PY" >/dev/null 2>&1 || die "no Python '$PY'"
install_missing "${PACKAGES[@]}"
for exe in mpiexec.openmpi mpiexec.mpich; do command -v "$exe" >/dev/null || die "$exe missing after install"; done

# mpi4py >= 4 (its wheel carries both the Open MPI and the MPICH flavour; Debian's python3-mpi4py 3.1
# is Open MPI only): the binary wheel only, as a source build takes ~6 minutes
if ! "$PY" -c 'import sys, mpi4py; sys.exit(int(mpi4py.__version__.split(".")[0]) < 4)' 2>/dev/null; then
    "$PY" -m pip install -q --disable-pip-version-check --only-binary=mpi4py --upgrade 'mpi4py>=4' \
        || die "pip could not install the mpi4py wheel into $PY"
fi

# mpi4py's MPICH flavour dlopens libmpi.so.12; Debian names it libmpich.so.12.
# (Readers of a pipe below never stop early: under pipefail the writer's SIGPIPE would end the script.)
lib=$(ldconfig -p | awk '$1 == "libmpich.so.12" && !n++ { print $NF }')
[ -n "$lib" ] || lib=$(dpkg -L libmpich12 2>/dev/null | awk '/\/libmpich\.so\.12$/ && !n++')
[ -n "$lib" ] && [ -e "$lib" ] || die "cannot find libmpich.so.12 (package libmpich12)"
mkdir -p "$SHIM_DIR" "$ENV_DIR"
[ "$(readlink "$SHIM_DIR/libmpi.so.12" 2>/dev/null)" = "$lib" ] || ln -sfn "$lib" "$SHIM_DIR/libmpi.so.12"
write_if_changed() {  # path, content: rewrite only when different, so readers never see a half file
    if [ "$(cat "$1" 2>/dev/null)" != "$2" ]; then printf '%s\n' "$2" > "$1.tmp" && mv "$1.tmp" "$1"; fi
}
write_if_changed "$ENV_DIR/mpich.env" "MPI4PY_MPIABI=mpich
LD_LIBRARY_PATH=$SHIM_DIR"
write_if_changed "$ENV_DIR/openmpi.env" "OMPI_ALLOW_RUN_AS_ROOT=1
OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
OMPI_MCA_rmaps_base_oversubscribe=1"

# Smoke tests. Rank output can interleave within a line, so every rank writes its own file.
work=$(mktemp -d /tmp/minipar-mpi.XXXXXX)
trap 'rm -rf "$work"' EXIT
ranks_answered() {  # label, prefix: files prefix.0 and prefix.1 hold the expected text
    local r
    for r in 0 1; do
        [ "$(cat "$2.$r" 2>/dev/null)" = "$3" ] || {
            echo "--- output of $1:" >&2; cat "$work/$1.log" >&2 || true
            die "$1: rank $r did not answer as expected (got '$(cat "$2.$r" 2>/dev/null)', want '$3')"; }
    done
}
run() {  # label, command...: bounded, output kept for the error message
    local label=$1; shift
    timeout -k 5 "$STEP_TIMEOUT" "$@" >"$work/$label.log" 2>&1 || {
        local rc=$?; cat "$work/$label.log" >&2; die "$label failed (exit $rc): $*"; }
}
cat > "$work/allreduce.py" <<'PY'
import sys
from mpi4py import MPI
comm = MPI.COMM_WORLD
total = comm.allreduce(comm.Get_rank() + 1)
with open("%s.%d" % (sys.argv[1], comm.Get_rank()), "w") as f:
    f.write("%s size=%d sum=%d" % (MPI.get_vendor()[0], comm.Get_size(), total))
PY

(
    set -a; . "$ENV_DIR/openmpi.env"; set +a
    run openmpi-hello mpiexec.openmpi -n 2 sh -c 'echo hello > "$0.$OMPI_COMM_WORLD_RANK"' "$work/ompi-hello"
    run openmpi-mpi4py mpiexec.openmpi -n 2 "$PY" "$work/allreduce.py" "$work/ompi-mpi4py"
)
ranks_answered openmpi-hello "$work/ompi-hello" hello
ranks_answered openmpi-mpi4py "$work/ompi-mpi4py" "Open MPI size=2 sum=3"

run mpich-hello mpiexec.mpich -n 2 sh -c 'echo hello > "$0.$PMI_RANK"' "$work/mpich-hello"
ranks_answered mpich-hello "$work/mpich-hello" hello
(
    set -a; . "$ENV_DIR/mpich.env"; set +a
    run mpich-mpi4py mpiexec.mpich -n 2 "$PY" "$work/allreduce.py" "$work/mpich-mpi4py"
)
ranks_answered mpich-mpi4py "$work/mpich-mpi4py" "MPICH size=2 sum=3"

ompi_version=$(mpiexec.openmpi --version 2>/dev/null | awk 'NR == 1 { print $NF }')
mpich_version=$(mpiexec.mpich --version 2>/dev/null | awk '$1 == "Version:" && !n++ { print $2 }')
mpi4py_version=$("$PY" -c 'import mpi4py; print(mpi4py.__version__)')
echo "OK mpi: Open MPI $ompi_version (mpiexec.openmpi, env $ENV_DIR/openmpi.env)," \
     "MPICH $mpich_version (mpiexec.mpich, mpi4py env $ENV_DIR/mpich.env)," \
     "mpi4py $mpi4py_version in $("$PY" -c 'import sys; print(sys.executable)')"
