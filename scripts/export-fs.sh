#!/bin/sh
# Give one NAS export a filesystem of its own, on the machine that runs the NAS pods (the podman
# host, or the Kubernetes node through `minikube ssh`). An export that is a folder of a shared
# filesystem lets any NFS client forge handles to the rest of it (docs/design.md, threat model);
# ganesha refuses tmpfs, so each export is a sparse ext4 image, loop-mounted:
#
#   DIR/export.img   the image (sparse: it takes the disk its files take, up to BYTES)
#   DIR/export/      its mount point, what the NAS pod serves
#   DIR/state/       the sync agent's state, a plain folder beside it (never on the export)
#
# usage: export-fs.sh prepare DIR BYTES FILES   mount (creating or growing the image as needed;
#                                              FILES inodes, fixed when it is made)
#        export-fs.sh mount DIR           mount the image if there is one (a flush after a reboot)
#        export-fs.sh remove DIR          unmount and delete the image and the state
# DIR must be <root>/<namespace>/<nas> (root: FILESIM_NODE_ROOT, default /var/lib/filesim), each
# part a plain name: nothing outside it is ever created, mounted or removed. A failed prepare
# leaves no half-made image behind.
# Needs root, util-linux (mount, losetup, mountpoint) and e2fsprogs (mkfs.ext4, resize2fs).
set -eu

NODE_ROOT=${FILESIM_NODE_ROOT:-/var/lib/filesim}

die() {
  printf 'export-fs: %s\n' "$*" >&2
  exit 1
}

# Refuse a DIR that is not <root>/<namespace>/<nas> with plain names.
check_dir() {
  case $1 in
    "$NODE_ROOT"/*/*) ;;
    *) die "$1 is not a NAS folder under $NODE_ROOT: refusing to touch it" ;;
  esac
  rest=${1#"$NODE_ROOT"/}
  case $rest in
    */*/* | .* | */.*) die "$1 is not a NAS folder under $NODE_ROOT: refusing to touch it" ;;
  esac
}

# Mount DIR's image on DIR/export unless it is mounted (after a reboot it is not).
mount_image() {
  if ! mountpoint -q "$1/export"; then
    mount -o loop,nosuid,nodev "$1/export.img" "$1/export"
    rmdir "$1/export/lost+found" 2>/dev/null || true
  fi
}

prepare() {
  dir=$1
  bytes=$2
  files=$3
  image=$dir/export.img
  mkdir -p "$dir/export" "$dir/state"
  chmod 0700 "$dir/state"
  if [ ! -f "$image" ]; then
    # FILES inodes (small files fill inodes before bytes), 1 KiB blocks when they are meant
    # to be small (a 1 KiB file takes 1 KiB, not 4); 256-byte inodes keep nanosecond
    # timestamps (the agent needs them).
    block=4096
    if [ $((bytes / files)) -le 4096 ]; then
      block=1024
    fi
    if ! truncate -s "$bytes" "$image" ||
      ! mkfs.ext4 -q -F -m 0 -b "$block" -N "$files" -I 256 -E root_owner=0:0,nodiscard "$image"; then
      rm -f "$image"
      die "could not make a filesystem of $bytes bytes and $files files in $image"
    fi
  fi
  mount_image "$dir"
  chmod 0777 "$dir/export"
  current=$(stat -c %s "$image")
  if [ "$bytes" -gt "$current" ]; then
    truncate -s "$bytes" "$image"
    device=$(losetup -j "$image" | head -n 1 | cut -d: -f1)
    [ -n "$device" ] || die "no loop device for $image"
    losetup -c "$device"
    resize2fs "$device" >/dev/null 2>&1 || die "could not grow $image to $bytes bytes"
  elif [ "$bytes" -lt "$current" ]; then
    printf 'export-fs: %s keeps its %s bytes until it is removed (it cannot shrink)\n' \
      "$image" "$current" >&2
  fi
}

remove() {
  dir=$1
  if mountpoint -q "$dir/export"; then
    umount "$dir/export" || umount -l "$dir/export"  # busy: detached, gone once released
  fi
  rm -f "$dir/export.img"
  rm -rf "$dir/state"
  rmdir "$dir/export" 2>/dev/null || true
  rmdir "$dir" 2>/dev/null || true
}

main() {
  [ "$(id -u)" -eq 0 ] || die "must run as root: it mounts a filesystem"
  [ $# -ge 2 ] && check_dir "$2"
  case ${1:-} in
    prepare)
      [ $# -eq 4 ] || die "usage: export-fs.sh prepare DIR BYTES FILES"
      prepare "$2" "$3" "$4"
      ;;
    mount)
      [ $# -eq 2 ] || die "usage: export-fs.sh mount DIR"
      if [ -f "$2/export.img" ]; then
        mount_image "$2"
      fi
      ;;
    remove)
      [ $# -eq 2 ] || die "usage: export-fs.sh remove DIR"
      remove "$2"
      ;;
    *) die "usage: export-fs.sh prepare DIR BYTES FILES | mount DIR | remove DIR" ;;
  esac
}

main "$@"
