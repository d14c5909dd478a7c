#!/bin/sh
# Entrypoint of the kong-rust-host image (deploy/kubernetes/Containerfile), installed as
# /usr/local/bin/kong-rust-entrypoint.
#
#   kong-rust-entrypoint install DIR
#       Copy the host binary and the plugins to DIR/bin and DIR/plugins, a volume that Kong's
#       container mounts: Kong runs its query_cmd (DIR/bin/kong-rust-host dump NAME
#       --plugins-dir DIR/plugins) inside its own container when it starts. Run it as an init
#       container, before Kong's container starts. Then checks that every plugin loads there.
#   kong-rust-entrypoint ARGS...
#       exec kong-rust-host ARGS (the image's default: serve, on the image's plugins dir).
#
# Runs under any POSIX sh (the image is Kong's, which has /bin/sh); Kong's own commands never
# go through this script.
set -eu

home=${KONG_RUST_HOME:-/opt/kong-rust}

if [ "${1:-}" != install ]; then
    exec "$home/bin/kong-rust-host" "$@"
fi

dest=${2:?usage: kong-rust-entrypoint install DIR}
# The host refuses a plugins dir or a plugin that other users can write (loading runs its
# code): the copies are 0755/0644 whatever the volume's own mode is.
umask 022
rm -rf "${dest:?}/bin" "${dest:?}/plugins"
mkdir -p "$dest/bin" "$dest/plugins"
cp "$home/bin/kong-rust-host" "$dest/bin/kong-rust-host"
cp "$home"/plugins/*.so "$dest/plugins/"
chmod 0755 "$dest/bin" "$dest/plugins" "$dest/bin/kong-rust-host"
chmod 0644 "$dest"/plugins/*.so
# Every file must load from the copy, as Kong's query_cmd will load it: the whole report and
# exit 1 on a FAIL line, else the plugins it found.
if ! report=$("$dest/bin/kong-rust-host" doctor --plugins-dir "$dest/plugins" --socket-dir "$dest"); then
    printf '%s\n' "$report" >&2
    exit 1
fi
printf '%s\n' "$report" | grep '^ok    plugin '
echo "kong-rust-entrypoint: installed kong-rust-host and its plugins in $dest"
