#!/usr/bin/env bash
# CI: build the Docker image from the repo's Dockerfile and run the Compose stack end to end, with
# podman and podman-compose (no Docker engine and no image registry here). Runs as root on Debian;
# called from .ci/run, or alone: ci/containers.sh
#
# 1. installs podman, podman-compose, runc, debootstrap, docker-compose (for `config` only);
# 2. builds local stand-ins for the base images the Dockerfile and docker-compose.yml name
#    (rust:1.95-bookworm, debian:bookworm-slim, redis:7-alpine), cached between runs;
# 3. builds cachegate:local with `podman build` and the unchanged Dockerfile;
# 4. checks the image (non-root user, --version, HEALTHCHECK) and the stack (ready, round trip,
#    401, private Redis, Redis restart with AOF persistence, clean stop, `down -v`).
#
# Stand-in caches: the debootstrap root file system in $CACHE_DIR, the images in podman's store
# (/var/lib/containers), each labelled with a hash of what it is built from and rebuilt when that
# changes. `podman build` reuses the Dockerfile's dependency layer until Cargo.toml/Cargo.lock or a
# base image change.
#
# Settings: CACHEGATE_CI_CACHE (default /var/cache/cachegate-ci), CACHEGATE_CI_DEBIAN_MIRROR (default:
# the machine's apt sources).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR=${CACHEGATE_CI_CACHE:-/var/cache/cachegate-ci}
PROJECT=cachegateci$$ # unique: an aborted run never collides with this one
IMAGE=cachegate:local # what docker-compose.yml's `image:` names
LABEL_KEY=org.cachegate.ci.built-from
PYTHON=/usr/bin/python3 # Debian's, with PyYAML (podman-compose needs both)
START=$SECONDS

say() { printf '== containers [%3ss] %s\n' "$((SECONDS - START))" "$*"; }
fail() {
  printf 'containers: FAILED: %s\n' "$*" >&2
  exit 1
}

# ---- cleanup: whatever happens, remove what this run started ---------------------------------
WORK=$(mktemp -d /tmp/cachegate-ci.XXXXXX)
chmod 700 "$WORK" # holds the rendered compose file, which contains the generated token
ROOTFS="" # a debootstrap target under construction (its /proc and /sys may be mounted)
TOKEN=""

cleanup() {
  local status=$?
  set +e
  if [ "$status" -ne 0 ] && [ -f "$WORK/compose.log" ]; then
    echo "---- podman-compose and container logs (token masked) ----" >&2
    for c in $(project_objects ps 2>/dev/null); do
      echo "-- $(podman inspect --format '{{.Name}}' "$c")" >&2
      podman logs --tail 40 "$c" 2>&1 | mask >&2
    done
    tail -n 40 "$WORK/compose.log" | mask >&2
  fi
  if [ -f "$WORK/compose.yml" ]; then
    podman-compose -p "$PROJECT" -f "$WORK/compose.yml" down -v -t 1 >/dev/null 2>&1
  fi
  # What podman-compose 1.0.3 leaves behind (it never removes networks), or what a failed `up`
  # created before it stopped.
  project_objects ps | xargs -r podman rm -f -t 1 >/dev/null 2>&1
  project_objects volume | xargs -r podman volume rm -f >/dev/null 2>&1
  project_objects network | xargs -r podman network rm -f >/dev/null 2>&1
  if [ -n "$ROOTFS" ] && [ -d "$ROOTFS" ]; then
    for m in proc sys dev/pts dev; do umount -l "$ROOTFS/$m" 2>/dev/null; done
    rm -rf --one-file-system "$ROOTFS"
  fi
  rm -rf "$WORK"
  if [ "$status" -ne 0 ]; then
    echo "containers: failed after $((SECONDS - START))s" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The ids of this run's containers (ps), volumes or networks.
project_objects() {
  local kind=$1
  case $kind in
    ps) podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT" ;;
    *) podman "$kind" ls -q --filter "label=io.podman.compose.project=$PROJECT" ;;
  esac
}

mask() {
  if [ -n "$TOKEN" ]; then sed "s/$TOKEN/<token>/g"; else cat; fi
}

# ---- 1. tools ---------------------------------------------------------------------------------
install_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v podman-compose >/dev/null || missing+=(podman-compose)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/podman/netavark ] || missing+=(netavark)
  [ -x /usr/lib/podman/aardvark-dns ] || missing+=(aardvark-dns)
  command -v iptables >/dev/null || missing+=(iptables) # netavark's firewall rules
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v curl >/dev/null || missing+=(curl)
  [ -x "$PYTHON" ] || missing+=(python3 python3-yaml)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
      >"$WORK/apt.log" 2>&1 || { tail -n 20 "$WORK/apt.log" >&2; fail "apt-get install"; }
  fi
}

# Containers run with runc and without raised resource limits: this sandbox refuses to raise them
# (crun and podman's default ulimits fail). A private config, so the machine's stays untouched;
# podman-compose passes the environment on to podman.
configure_podman() {
  mkdir -p "$CACHE_DIR"
  cat >"$CACHE_DIR/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
EOF
  export CONTAINERS_CONF=$CACHE_DIR/containers.conf
}

# ---- 2. stand-in base images ------------------------------------------------------------------
hash_of() { sha256sum | cut -c1-16; }

image_key() { podman image inspect --format "{{index .Labels \"$LABEL_KEY\"}}" "$1" 2>/dev/null; }

image_id() { podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# Removes an image that a rebuild replaced (unless something still uses it).
drop_replaced() {
  local old=$1 new
  new=$(image_id "$2")
  if [ -n "$old" ] && [ "$old" != "$new" ]; then podman rmi "$old" >/dev/null 2>&1 || true; fi
}

# The Debian archive and security URIs from the machine's apt sources (deb822 or one-line), for the
# host's codename: never a host name written here.
apt_mirrors() {
  "$PYTHON" - <<'EOF'
import glob, re
codename = ""
for line in open("/etc/os-release"):
    if line.startswith("VERSION_CODENAME="):
        codename = line.split("=", 1)[1].strip().strip('"')
entries = []  # (uri, suites)
for path in glob.glob("/etc/apt/sources.list.d/*.sources"):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
            for uri in fields.get("uris", []):
                entries.append((uri, fields.get("suites", [])))
for path in ["/etc/apt/sources.list"] + glob.glob("/etc/apt/sources.list.d/*.list"):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb":
            entries.append((line[1], [line[2]]))
archive = next((u for u, s in entries if codename in s), "")
security = next((u for u, s in entries if codename + "-security" in s), "")
print(archive.rstrip("/"), security.rstrip("/"))
EOF
}

# debian:bookworm-slim: debootstrap's minbase (what the official image is made from, with
# debuerreotype) slimmed the same way: no docs, man pages or locales, no apt lists. It differs in
# build date and in apt sources: the machine's mirror instead of deb.debian.org.
build_slim_rootfs() {
  local dir=$1 archive=$2 security=$3
  debootstrap --variant=minbase bookworm "$dir" "$archive" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap from $archive"; }
  cat >"$dir/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$dir/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$dir/etc/apt/apt.conf.d/docker-autoremove-suggests"
  rm -f "$dir/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$archive"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$security" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n' "$security"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$dir/etc/apt/sources.list.d/debian.sources"
  find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$dir"/usr/share/{man,groff,info,lintian,linda,locale}/* \
    "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/* "$dir"/var/log/* "$dir"/tmp/*
  : >"$dir/etc/hostname"
  : >"$dir/etc/resolv.conf"
}

build_slim() {
  local archive=$1 security=$2 release key tarball old
  # The suite's Release date changes with each point release: a new one rebuilds the stand-in.
  curl -fsS --max-time 60 -o "$WORK/InRelease" "$archive/dists/bookworm/InRelease" ||
    fail "cannot read $archive/dists/bookworm/InRelease"
  release=$(grep -m1 '^Date:' "$WORK/InRelease")
  key=$({ declare -f build_slim_rootfs; echo "$archive $security $release"; } | hash_of)
  if [ "$(image_key debian:bookworm-slim)" = "$key" ]; then
    say "debian:bookworm-slim stand-in: cached ($key)"
    return
  fi
  tarball=$CACHE_DIR/debian-bookworm-slim-$key.tar
  if [ ! -f "$tarball" ]; then
    say "debian:bookworm-slim stand-in: debootstrap from the machine's mirror"
    ROOTFS=$CACHE_DIR/rootfs.$$
    build_slim_rootfs "$ROOTFS" "$archive" "$security"
    tar -C "$ROOTFS" --numeric-owner --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
      -cf "$tarball.tmp" .
    rm -rf --one-file-system "$ROOTFS"
    ROOTFS=""
    find "$CACHE_DIR" -maxdepth 1 -name 'debian-bookworm-slim-*.tar' -delete
    mv "$tarball.tmp" "$tarball"
  fi
  say "debian:bookworm-slim stand-in: importing $tarball"
  old=$(image_id debian:bookworm-slim)
  podman import --quiet --change 'CMD ["bash"]' --change "LABEL $LABEL_KEY=$key" \
    "$tarball" debian:bookworm-slim >/dev/null
  podman tag debian:bookworm-slim docker.io/library/debian:bookworm-slim
  drop_replaced "$old" debian:bookworm-slim
}

# podman_build LOG WHAT ARGS...: podman build with the network of the host (apt-get, crates.io) and
# the docker format (the OCI format has no HEALTHCHECK: podman would drop it). Success is a written
# image id: podman 4.3's build can exit 0 when interrupted.
podman_build() {
  local log=$1 what=$2
  shift 2
  rm -f "$WORK/iid"
  if ! podman build --pull=never --network host --format docker --iidfile "$WORK/iid" "$@" \
    >"$log" 2>&1 || [ ! -s "$WORK/iid" ]; then
    tail -n 60 "$log" >&2
    fail "$what"
  fi
}

# Builds $1 from the Containerfile $2 with context $3 (and podman build options $5...), unless the
# image was built from the same inputs (Containerfile, base image, $4 for the files it copies).
build_derived() {
  local name=$1 containerfile=$2 context=$3 extra=$4 key old
  shift 4
  key=$({
    cat "$containerfile"
    image_id debian:bookworm-slim
    echo "$extra"
  } | hash_of)
  if [ "$(image_key "$name")" = "$key" ]; then
    say "$name stand-in: cached ($key)"
    return
  fi
  say "$name stand-in: building"
  old=$(image_id "$name")
  podman_build "$WORK/build-stand-in.log" "building the $name stand-in" \
    --label "$LABEL_KEY=$key" "$@" -t "$name" -t "docker.io/library/$name" \
    -f "$containerfile" "$context"
  drop_replaced "$old" "$name"
}

# redis:7-alpine: Debian's redis-server 7.0 (Alpine's image has the newest 7.x, built from source)
# on the slim stand-in. Like the official image: user redis (uid 999), /data as volume and working
# directory, docker-entrypoint.sh that chowns /data and drops root for `redis-server ...`
# (with setpriv where the official image has su-exec), protected mode off by default, port 6379.
build_redis() {
  local dir=$WORK/redis
  mkdir -p "$dir"
  cat >"$dir/Containerfile" <<'EOF'
FROM debian:bookworm-slim
RUN groupadd --system --gid 999 redis \
    && useradd --system --uid 999 --gid redis --home-dir /data --no-create-home redis \
    && apt-get update \
    && apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /data && chown redis:redis /data
COPY docker-entrypoint.sh redis-server /usr/local/bin/
VOLUME /data
WORKDIR /data
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 6379
CMD ["redis-server"]
EOF
  # The official entrypoint's steps, su-exec replaced by setpriv (util-linux).
  cat >"$dir/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
# first arg is `-f` or `--some-option`, or a config file: run redis-server with it
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
# allow the container to be started with `--user`
if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
um="$(umask)"
if [ "$um" = '0022' ]; then
  umask 0077
fi
exec "$@"
EOF
  # The official image's redis-server is compiled with protected mode off (other containers must
  # reach it); Debian's is not: turn it off first, so the command line can still turn it on.
  cat >"$dir/redis-server" <<'EOF'
#!/bin/sh
case "${1:-}" in
  -v | --version | -h | --help | --test-memory | --check-system) exec /usr/bin/redis-server "$@" ;;
esac
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  conf=$1
  shift
  exec /usr/bin/redis-server "$conf" --protected-mode no "$@"
fi
exec /usr/bin/redis-server --protected-mode no "$@"
EOF
  chmod 755 "$dir/docker-entrypoint.sh" "$dir/redis-server"
  build_derived redis:7-alpine "$dir/Containerfile" "$dir" \
    "$(cat "$dir/docker-entrypoint.sh" "$dir/redis-server")"
}

# rust:X.Y-bookworm: the official image is buildpack-deps:bookworm (compilers, headers, git, ...)
# with rustup and the newest X.Y.Z toolchain. This one: the slim stand-in with gcc and libc6-dev
# (enough for crates with C code: ring, mimalloc), and the machine's own toolchain of that version
# copied into the same paths (RUSTUP_HOME, CARGO_HOME, PATH), without rustup and the docs. It also
# trusts the certificate authorities the machine trusts, so cargo reaches crates.io where the
# network intercepts TLS.
build_rust() {
  local tag=$1 version=${1%%-*} dir=$WORK/rust sysroot="" tc
  for tc in $(rustup toolchain list 2>/dev/null | awk '{print $1}'); do
    if rustup run "$tc" rustc --version 2>/dev/null | grep -q "^rustc $version\."; then
      sysroot=$(rustup run "$tc" rustc --print sysroot)
      break
    fi
  done
  if [ -z "$sysroot" ] && rustc --version 2>/dev/null | grep -q "^rustc $version\."; then
    sysroot=$(rustc --print sysroot)
  fi
  [ -n "$sysroot" ] || fail "no Rust $version toolchain on this machine for the rust:$tag stand-in"
  local full
  full=$("$sysroot/bin/rustc" --version | awk '{print $2}')
  mkdir -p "$dir"
  cat >"$dir/Containerfile" <<EOF
FROM debian:bookworm-slim
RUN apt-get update \\
    && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \\
    && rm -rf /var/lib/apt/lists/* \\
    && awk 'FNR == 1 { file++ } /BEGIN CERT/ { cert = "" } { cert = cert \$0 "\\n" } \\
        /END CERT/ { if (file == 1) known[cert] = 1; else if (!(cert in known)) \\
          printf "%s", cert > ("/usr/local/share/ca-certificates/machine-" ++n ".crt") }' \\
        /etc/ssl/certs/ca-certificates.crt /run/machine-ca-certificates.crt \\
    && update-ca-certificates >/dev/null
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$full
COPY bin /usr/local/rustup/toolchains/$full-x86_64-unknown-linux-gnu/bin
COPY lib /usr/local/rustup/toolchains/$full-x86_64-unknown-linux-gnu/lib
COPY libexec /usr/local/rustup/toolchains/$full-x86_64-unknown-linux-gnu/libexec
RUN mkdir -p /usr/local/cargo/bin \\
    && ln -s /usr/local/rustup/toolchains/$full-x86_64-unknown-linux-gnu/bin/* /usr/local/cargo/bin/ \\
    && chmod -R a+w /usr/local/rustup /usr/local/cargo \\
    && rustc --version && cargo --version
EOF
  local bundle=/etc/ssl/certs/ca-certificates.crt
  [ -f "$bundle" ] || fail "no $bundle on this machine"
  build_derived "rust:$tag" "$dir/Containerfile" "$sysroot" \
    "$("$sysroot/bin/rustc" -vV; sha256sum <"$bundle")" \
    --volume "$bundle:/run/machine-ca-certificates.crt:ro"
}

# ---- 3. the image -----------------------------------------------------------------------------
build_image() {
  local old
  old=$(image_id "$IMAGE")
  say "podman build $IMAGE (Dockerfile unchanged; cargo reaches crates.io through the host network)"
  local t0=$SECONDS
  podman_build "$WORK/build.log" "podman build $IMAGE" -t "$IMAGE" -f Dockerfile .
  say "image built in $((SECONDS - t0))s; size $(podman image inspect --format '{{.Size}}' "$IMAGE" |
    awk '{printf "%.1f MB", $1 / 1e6}')"
  drop_replaced "$old" "$IMAGE"
  drop_previous_builder
}

# Each source revision leaves its builder stage's last layer (the compiled crate, some 100 MB) as
# an untagged image that only an identical rebuild would reuse: keep the newest, drop the one
# before. (`podman image prune` would also take the dependency layer once nothing is built on it.)
drop_previous_builder() {
  local leaf previous=""
  leaf=$(awk '/^\[[0-9]+\/[0-9]+\] STEP/ { stage = substr($1, 2, index($1, "/") - 2) }
    /^--> / && stage == 1 { id = $NF } END { print id }' "$WORK/build.log")
  [ -n "$leaf" ] || return 0
  [ ! -f "$CACHE_DIR/builder-leaf" ] || previous=$(cat "$CACHE_DIR/builder-leaf")
  if [ -n "$previous" ] && [ "$previous" != "$leaf" ]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
  fi
  echo "$leaf" >"$CACHE_DIR/builder-leaf"
}

# ---- 4. checks --------------------------------------------------------------------------------
check_image() {
  local user uid version
  user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
  uid=$(podman run --rm --no-healthcheck --entrypoint id "$IMAGE" -u)
  if [ -z "$user" ] || [ "$user" = root ] || [ "$uid" = 0 ]; then
    fail "the image runs as root (USER '$user', uid $uid)"
  fi
  version=$(podman run --rm --no-healthcheck "$IMAGE" --version)
  grep -q "$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)" <<<"$version" ||
    fail "cachegate --version printed '$version'"
  healthcheck_cmd >/dev/null # the image has a HEALTHCHECK
  say "image: user $user (uid $uid), '$version', HEALTHCHECK $(healthcheck_cmd | tr '\n' ' ')"
}

# The image's HEALTHCHECK command, one argument per line.
healthcheck_cmd() {
  podman image inspect "$IMAGE" | "$PYTHON" -c '
import json, sys
test = (json.load(sys.stdin)[0].get("Healthcheck") or {}).get("Test") or []
if not test or test[0] not in ("CMD", "CMD-SHELL"):
    sys.exit("the image has no HEALTHCHECK")
print("\n".join(["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]))
'
}

# Runs the image's HEALTHCHECK command in the cachegate container: its exit status.
run_healthcheck() {
  local args=()
  mapfile -t args < <(healthcheck_cmd)
  podman exec "$(container cachegate)" "${args[@]}" >/dev/null 2>&1
}

# podman-compose 1.0.3 exits 0 even when a podman command it runs fails: callers check the result.
compose() {
  podman-compose -p "$PROJECT" -f "$WORK/compose.yml" "$@" >>"$WORK/compose.log" 2>&1 ||
    fail "podman-compose $*"
}

state() { podman inspect --format '{{.State.Status}}' "$(container "$1")" 2>/dev/null || echo missing; }

# compose_start SERVICE: podman-compose start, then check that it runs.
compose_start() {
  compose start "$1"
  [ "$(state "$1")" = running ] || fail "podman-compose start $1: $1 is $(state "$1")"
}

container() { podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT" \
  --filter "label=com.docker.compose.service=$1"; }

# A free TCP port on the host (8080 may be taken by something else on a CI machine).
free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

# Polls `$@` every 0.5 s until it succeeds or $1 seconds pass.
wait_until() {
  local limit=$1 deadline
  shift
  deadline=$((SECONDS + limit))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# Health checks: podman runs them from systemd timers, and there is no systemd here; so they are
# run by hand (`podman healthcheck run` updates the container's health status like a timer would).
redis_healthy() { podman healthcheck run "$(container redis)" >/dev/null 2>&1; }

ready() { [ "$(http GET /health/ready)" = 200 ]; }
not_ready() { ! ready; }

# http METHOD PATH [BODY] [--no-token]: prints the status code; the body goes to $WORK/body.
http() {
  local method=$1 path=$2 body=${3:-} args=()
  [ "${4:-}" = --no-token ] || args+=(-H "Authorization: Bearer $TOKEN")
  [ -z "$body" ] || args+=(-H 'Content-Type: application/json' --data "$body")
  curl -sS --max-time 10 -o "$WORK/body" -w '%{http_code}' -X "$method" "${args[@]}" \
    "http://127.0.0.1:$PORT$path" 2>/dev/null || true # curl prints 000 when it gets no answer
}

same_json() {
  "$PYTHON" -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])) != json.loads(sys.argv[2]))' \
    "$WORK/body" "$1"
}

expect() { # expect STATUS METHOD PATH [BODY] [--no-token]
  local want=$1 got
  shift
  got=$(http "$@")
  [ "$got" = "$want" ] || fail "$1 $2: HTTP $got, expected $want ($(head -c 300 "$WORK/body" 2>/dev/null))"
}

started_at() { podman inspect --format '{{.State.StartedAt}} {{.RestartCount}}' "$(container "$1")"; }

run_stack() {
  TOKEN=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))')
  PORT=$(free_port)
  # podman-compose 1.0.3 reads only ./.env (no --env-file) and leaves `${VAR:-}` uninterpolated:
  # Docker Compose's own `config` renders the file with .env.example, overridden by a generated
  # token (.env.example's placeholder may be refused) and a free published port; podman-compose
  # runs the result.
  (umask 077 && CACHE_AUTH_TOKENS=$TOKEN CACHE_PUBLISH_PORT=$PORT \
    docker-compose --env-file .env.example -p "$PROJECT" config >"$WORK/compose.yml")
  local grace
  grace=$("$PYTHON" -c '
import re, sys, yaml
value = str(yaml.safe_load(open(sys.argv[1]))["services"]["cachegate"].get("stop_grace_period", "10s"))
m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", value)
print(int(m.group(1) or 0) * 60 + int(m.group(2) or 0))' "$WORK/compose.yml")

  say "podman-compose up (project $PROJECT, published port $PORT)"
  local t_up=$SECONDS
  # podman-compose ignores `depends_on: condition: service_healthy` and starts everything at once:
  # create the stack, start Redis, wait for its health check, then start cachegate.
  compose up --no-build --no-start # (with -d it would pass -d to podman create, which fails)
  for service in redis cachegate; do
    [ "$(state $service)" = created ] || fail "podman-compose up: $service is $(state $service)"
  done
  compose_start redis
  wait_until 60 redis_healthy || fail "redis never became healthy"
  compose_start cachegate
  wait_until 60 ready || fail "cachegate never became ready on port $PORT"
  local up_to_ready=$((SECONDS - t_up))
  say "stack ready ${up_to_ready}s after up"

  run_healthcheck || fail "the HEALTHCHECK command fails while cachegate is ready"

  expect 204 PUT '/v1/cache/ci:roundtrip?ttl=600' '{"ci":["round",1,true]}'
  expect 200 GET /v1/cache/ci:roundtrip
  same_json '{"ci":["round",1,true]}' || fail "GET returned $(cat "$WORK/body")"
  expect 401 GET /v1/cache/ci:roundtrip '' --no-token
  expect 401 PUT /v1/cache/ci:other '{"a":1}' --no-token
  say "PUT + GET round trip through port $PORT; 401 without a token"

  local redis ports mode
  redis=$(container redis)
  ports=$(podman port "$redis")
  [ -z "$ports" ] || fail "redis publishes ports: $ports"
  mode=$(podman inspect --format '{{.HostConfig.NetworkMode}}' "$redis")
  [ "$mode" = bridge ] || fail "redis runs with network mode $mode"
  [ "$(podman exec "$redis" awk '/^Uid:/ { print $2 }' /proc/1/status)" = 999 ] ||
    fail "redis-server does not run as the redis user"
  [ "$(podman exec "$redis" redis-cli config get appendonly | tail -n1)" = yes ] ||
    fail "redis runs without appendonly"
  podman exec "$redis" test -d /data/appendonlydir || fail "no append-only file in /data"
  say "redis: no published port (bridge network only), runs as redis (uid 999), AOF in /data"

  local before
  before=$(started_at cachegate)
  expect 204 PUT '/v1/cache/ci:persisted?ttl=3600' '{"survives":"a redis restart"}'
  compose stop -t 10 redis
  [ "$(state redis)" = exited ] || fail "podman-compose stop redis: redis is $(state redis)"
  wait_until 30 not_ready || fail "/health/ready still says ready with redis stopped"
  if run_healthcheck; then fail "the HEALTHCHECK command exits 0 with redis stopped"; fi
  compose_start redis
  wait_until 60 redis_healthy || fail "redis never became healthy after its restart"
  wait_until 60 ready || fail "cachegate did not recover after the redis restart"
  run_healthcheck || fail "the HEALTHCHECK command fails after the redis restart"
  [ "$(started_at cachegate)" = "$before" ] || fail "cachegate was restarted"
  expect 200 GET /v1/cache/ci:persisted
  same_json '{"survives":"a redis restart"}' || fail "after the restart GET returned $(cat "$WORK/body")"
  say "redis restart: HEALTHCHECK non-zero while down, cachegate recovered without a restart, value kept"

  # podman-compose 1.0.3 ignores stop_grace_period (it stops with -t 10): pass it.
  local cachegate t_stop code
  cachegate=$(container cachegate)
  t_stop=$SECONDS
  compose stop -t "$grace" cachegate
  [ "$(state cachegate)" = exited ] || fail "podman-compose stop cachegate: it is $(state cachegate)"
  code=$(podman inspect --format '{{.State.ExitCode}}' "$cachegate")
  [ "$code" = 0 ] || fail "cachegate exited with $code on stop"
  [ $((SECONDS - t_stop)) -lt "$grace" ] || fail "cachegate took $((SECONDS - t_stop))s to stop"
  say "stop: cachegate exited 0 in $((SECONDS - t_stop))s (grace ${grace}s)"

  compose down -v
  # podman-compose 1.0.3's `down` leaves the project's networks: remove them as Compose would.
  project_objects network | xargs -r podman network rm >/dev/null
  local left
  left="$(project_objects ps)$(project_objects volume)$(project_objects network)"
  [ -z "$left" ] || fail "down -v left: $left"
  say "down -v: no container, volume or network left"
  STACK_SUMMARY="up to ready ${up_to_ready}s"
}

main() {
  install_tools
  configure_podman
  local archive security rust_tag
  read -r archive security < <(apt_mirrors)
  archive=${CACHEGATE_CI_DEBIAN_MIRROR:-$archive}
  [ -n "$archive" ] || fail "no Debian mirror in the machine's apt sources"
  rust_tag=$(sed -n 's/^FROM rust:\([^ ]*\).*/\1/p' Dockerfile | head -n1)
  [ -n "$rust_tag" ] || fail "the Dockerfile's builder is not FROM rust:..."
  build_slim "$archive" "$security"
  build_redis
  build_rust "$rust_tag"
  build_image
  check_image
  run_stack
  say "done: image $(podman image inspect --format '{{.Size}}' "$IMAGE" |
    awk '{printf "%.1f MB", $1 / 1e6}'), $STACK_SUMMARY, total $((SECONDS - START))s"
}

main
