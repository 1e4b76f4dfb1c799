#!/usr/bin/env bash
# Run deploy/Dockerfile's steps on this machine, without a container engine, and check that the
# result serves as the image would. CI runs it (tests/deploy/test_deploy_files.py).
#
#   deploy/build-image.sh            # exit 0 and "build-image: ok" when every check passed
#
# Stage 1 (build): copy what the Dockerfile COPYs into a fresh folder, `pip wheel` it there.
# Stage 2 (image): a fresh venv standing for the image's Python, `pip install --no-index` from
# those wheels only, `mesh-controlplane --version`.
# Run: the Dockerfile's ENTRYPOINT + CMD, USER and HEALTHCHECK are read from the Dockerfile and
# run as written, with two changes for a shared machine: absolute paths (the mounts and the
# volume) live under a temp root, and 0.0.0.0:PORT becomes 127.0.0.1:0 (a free loopback port).
# As root, the server runs as the Dockerfile's USER uid (setpriv), as in the image.
# Checks: the health check passes once serving, the process runs as that uid, the admin API
# wants the mounted token (401 without, 200 with), the config folder is loaded, SIGTERM ends
# it with exit 0, the store is in the data dir, and the health check fails once it is gone.
#
# Environment: PYTHON (default: python3, or /usr/bin/python3 when the image uid cannot run
# python3's files), KEEP_WORK=1 keeps the temp folder. Stage 1 needs the package index (pip
# wheel fetches the dependencies; pip's cache is used, unlike the image's --no-cache-dir).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
dockerfile="$here/Dockerfile"
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '==> %s\n' "$*"; }
fail() { printf 'build-image: FAILED: %s\n' "$*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/mesh-image.XXXXXX")
chmod 0755 "$work"   # the image uid reads the venv and the mounts below it
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ "${KEEP_WORK:-}" == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- what the Dockerfile says (deploy/dockerfile_facts.py: one reading, shared with the tests) --
declare -a COPY_SOURCES RUN_ARGV HEALTH_ARGV
facts=$(python3 "$here/dockerfile_facts.py" "$dockerfile" "$work/root") \
    || fail "cannot mirror $dockerfile"
eval "$facts"

# Run as the image's user when this script is root (setpriv execs: the pid stays the server's).
if [[ $(id -u) == 0 ]]; then
    as_image_user=(setpriv "--reuid=$IMAGE_UID" "--regid=$IMAGE_GID" --clear-groups --)
else
    as_image_user=()
    echo "note: not root, so the server runs as $(id -un), not as uid $IMAGE_UID"
fi
# The image's environment: its PATH (the venv standing for /usr/local), nothing of ours.
image_env=(env -i "HOME=/nonexistent" "LANG=C.UTF-8"
           "PATH=$work/image/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")

pick_python() {
    local candidate real
    for candidate in ${PYTHON:-python3 /usr/bin/python3}; do
        real=$(command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; print(sys.executable)') \
            || continue
        if "${as_image_user[@]}" "${image_env[@]}" "$real" -c 'import ensurepip, venv' \
            2>/dev/null; then
            echo "$real"; return 0
        fi
        echo "note: $real is not usable as uid $IMAGE_UID (or lacks venv), trying the next" >&2
    done
    return 1
}
python=$(pick_python) || fail "no Python with venv that uid $IMAGE_UID can run (set PYTHON)"
step "python: $python ($("$python" --version))"

# --- stage 1: build ---------------------------------------------------------------------------
step "stage build: copy ${COPY_SOURCES[*]} and pip wheel"
mkdir "$work/src"
for source in "${COPY_SOURCES[@]}"; do
    cp -R "$repo/${source%/}" "$work/src/"
done
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$python" -m venv "$work/build"
# Dockerfile: RUN pip wheel --no-cache-dir --wheel-dir /wheels .
(cd "$work/src" && "$work/build/bin/pip" wheel --quiet --wheel-dir "$work/wheels" .)
ls "$work/wheels"/meshlib_xds-*.whl >/dev/null || fail "no meshlib_xds wheel was built"

# --- stage 2: image -------------------------------------------------------------------------
step "stage image: pip install --no-index from the wheels only"
"$python" -m venv "$work/image"
# Dockerfile: RUN pip install --no-cache-dir --no-index --find-links /wheels meshlib-xds
"$work/image/bin/pip" install --quiet --no-index --find-links "$work/wheels" meshlib-xds
version=$("${as_image_user[@]}" "${image_env[@]}" mesh-controlplane --version)
step "$version"

# --- the mounts and the volume ----------------------------------------------------------------
root="$work/root"
mkdir -p "$root/etc/mesh" "$root/etc/mesh-admin" "$root/var/lib/mesh"
cp "$repo/examples/conference/mesh.yaml" "$root/etc/mesh/mesh.yaml"
token=$("$python" -c 'import secrets; print(secrets.token_hex(32))')
printf '# written by deploy/build-image.sh\n%s admin\n' "$token" >"$root/etc/mesh-admin/tokens"
chmod 0400 "$root/etc/mesh-admin/tokens"
if [[ $(id -u) == 0 ]]; then
    chown "$IMAGE_UID:$IMAGE_GID" "$root/etc/mesh-admin/tokens" "$root/var/lib/mesh"
fi
chmod 0750 "$root/var/lib/mesh"

# --- run as the image would ---------------------------------------------------------------------
step "run: ${RUN_ARGV[*]}"
(cd "$root/var/lib/mesh" && exec "${as_image_user[@]}" "${image_env[@]}" "${RUN_ARGV[@]}") \
    >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
admin=""
for _ in $(seq 600); do  # up to 60 s for the serving line
    admin=$(sed -n 's/.*"admin_address": "\([^"]*\)".*/\1/p' "$work/stdout")
    [[ -n "$admin" ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/stderr" >&2; fail "the server exited early"; }
    sleep 0.1
done
[[ -n "$admin" ]] || { cat "$work/stderr" >&2; fail "no serving line within 60 s"; }
step "serving: $(cat "$work/stdout")"

health() { "${as_image_user[@]}" "${image_env[@]}" "${HEALTH_ARGV[@]//127.0.0.1:15014/$admin}"; }
healthy=""
for _ in $(seq 30); do  # the image's start period is 30 s
    if health 2>/dev/null; then healthy=1; break; fi
    sleep 1
done
[[ -n "$healthy" ]] || { health || true; fail "the health check did not pass"; }
step "health check passed: ${HEALTH_ARGV[*]}"

if [[ $(id -u) == 0 ]]; then
    uid=$(awk '/^Uid:/ {print $2}' "/proc/$server_pid/status")
    [[ "$uid" == "$IMAGE_UID" ]] || fail "the server runs as uid $uid, not $IMAGE_UID"
    step "the server runs as uid $uid"
fi

admin_status() {  # GET http://ADMIN/PATH [TOKEN] -> the HTTP status
    "$python" - "http://$admin$1" "${2:-}" <<'PY'
import sys, urllib.error, urllib.request

url, token = sys.argv[1], sys.argv[2]
request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
try:
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read().decode()
        print(response.status, "mesh.yaml" in body)
except urllib.error.HTTPError as exc:
    print(exc.code, False)
PY
}
[[ $(admin_status /v1/config) == "401 False" ]] || fail "/v1/config without a token is not 401"
[[ $(admin_status /v1/config "$token") == "200 True" ]] \
    || fail "/v1/config with the mounted token is not 200 with the mounted config's mesh.yaml"
step "admin API: 401 without a token, 200 with the mounted one; /etc/mesh/mesh.yaml loaded"

step "stop: SIGTERM"
kill -TERM "$server_pid"
for _ in $(seq 300); do  # up to 30 s (Docker gives 10 s before SIGKILL by default)
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$server_pid" 2>/dev/null && fail "still running 30 s after SIGTERM"
rc=0
wait "$server_pid" || rc=$?
server_pid=""
[[ $rc == 0 ]] || { cat "$work/stderr" >&2; fail "exit code $rc after SIGTERM, not 0"; }
grep -q controlplane_stopped "$work/stderr" || fail "no controlplane_stopped log line"
step "clean exit (0)"

[[ -s "$root/var/lib/mesh/store.db" ]] || fail "no store.db in the data dir volume"
step "the store is in the volume: $(ls "$root/var/lib/mesh" | tr '\n' ' ')"
if health 2>/dev/null; then fail "the health check passes with no server"; fi
step "the health check fails once it is gone"
echo "build-image: ok"
