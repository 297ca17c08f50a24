#!/usr/bin/env bash
# Makes, from Debian's packages, the base images the Dockerfile names, under those names,
# for machines that reach no container image registry (CI here). Users with a registry
# pull the real ones and never need this. Each image is made once (kept by Docker).
#
#   rust:<RUST_VERSION>-slim-bookworm       as the official image: Debian bookworm with
#                                           ca-certificates, gcc, libc6-dev, and rustup with
#                                           the toolchain in /usr/local/{rustup,cargo}; the
#                                           toolchain is copied from this machine's rustup
#                                           (it must be that version)
#   gcr.io/distroless/cc-debian12:nonroot   as distroless "cc": glibc, libgcc, CA
#                                           certificates (Debian's, generated inside),
#                                           tzdata, netbase, users root and nonroot
#                                           (65532); no shell, no package manager
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
log() { printf '[base-images] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

rust_version=$(sed -n 's/^ARG RUST_VERSION=//p' "$root/Dockerfile")
rust_image=rust:$rust_version-slim-bookworm
runtime_image=gcr.io/distroless/cc-debian12:nonroot
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

command -v mmdebstrap >/dev/null || die "mmdebstrap is needed (apt-get install mmdebstrap)"
have() { docker image inspect "$1" >/dev/null 2>&1; }

if have "$rust_image"; then
  log "$rust_image is there"
else
  toolchain=$(rustc --print sysroot)
  [ "$(rustc --version | awk '{print $2}')" = "$rust_version" ] ||
    die "this machine's rustc is $(rustc --version), not $rust_version (Dockerfile RUST_VERSION): install that toolchain"
  rustup_bin=$(command -v rustup) || die "rustup is needed: the image's cargo and rustc are rustup's proxies"
  log "Making $rust_image from Debian $suite and the $rust_version toolchain in $toolchain (about a minute)"
  triple=$(rustc -vV | sed -n 's/^host: //p')
  start=$SECONDS
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,gcc,libc6-dev \
    --customize-hook="mkdir -p \"\$1/usr/local/rustup/toolchains/$rust_version-$triple\" \"\$1/usr/local/cargo/bin\"" \
    --customize-hook="tar -C '$toolchain' --exclude=./share/doc -cf - . | tar -C \"\$1/usr/local/rustup/toolchains/$rust_version-$triple\" -xf -" \
    --customize-hook="cp '$rustup_bin' \"\$1/usr/local/cargo/bin/rustup\"" \
    --customize-hook="for p in cargo rustc rustdoc rust-gdb rust-lldb rustfmt cargo-fmt cargo-clippy clippy-driver; do ln -f \"\$1/usr/local/cargo/bin/rustup\" \"\$1/usr/local/cargo/bin/\$p\"; done" \
    --customize-hook="printf 'version = \"12\"\\ndefault_toolchain = \"$rust_version-$triple\"\\nprofile = \"minimal\"\\n' > \"\$1/usr/local/rustup/settings.toml\"" \
    --customize-hook='chmod -R a+w "$1/usr/local/rustup" "$1/usr/local/cargo"' \
    "$suite" - "$mirror" |
    docker import \
      --change 'ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin RUST_VERSION='"$rust_version" \
      --change 'CMD ["bash"]' - "$rust_image" >/dev/null
  log "$rust_image made in $((SECONDS - start)) s"
fi

if have "$runtime_image"; then
  log "$runtime_image is there"
else
  log "Making $runtime_image from Debian $suite (about a minute)"
  start=$SECONDS
  # `extract`: the packages' files only, no maintainer scripts, so nothing else (no shell,
  # no dpkg) comes along; what their scripts would make is made by the hooks (extract
  # hooks: this variant runs no customize hooks).
  mmdebstrap --quiet --variant=extract --include=libc6,libgcc-s1,libssl3,ca-certificates,tzdata,netbase,base-files \
    --extract-hook='mkdir -p "$1/etc/ssl/certs" "$1/home/nonroot" "$1/tmp" && chmod 1777 "$1/tmp" && chown 65532:65532 "$1/home/nonroot"' \
    --extract-hook='find "$1/usr/share/ca-certificates/mozilla" -name "*.crt" | sort | xargs cat > "$1/etc/ssl/certs/ca-certificates.crt"' \
    --extract-hook='printf "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" > "$1/etc/passwd"' \
    --extract-hook='printf "root:x:0:\nnonroot:x:65532:\nnobody:x:65534:\n" > "$1/etc/group"' \
    --extract-hook='rm -rf "$1/usr/share/doc" "$1/usr/share/man" "$1/usr/share/info" "$1/usr/share/lintian" "$1/var/lib/dpkg" "$1/var/cache/apt" "$1/var/lib/apt"' \
    "$suite" - "$mirror" |
    docker import \
      --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
      --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
      - "$runtime_image" >/dev/null
  log "$runtime_image made in $((SECONDS - start)) s"
fi
