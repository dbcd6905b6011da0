// Package imagepull turns an OCI container image into a bootable ext4 root
// filesystem for a microVM, in pure Go: no e2fsprogs, no root, no unpack
// to the host filesystem. The pipeline runs in one direction:
//
//	SOURCE ──Fetch──▶ layers ──BuildExt4──▶ image ──Finalize──▶ ──StageBootArtifacts──▶ OUTDIR
//
// [Pull] runs all of it: Pull(ctx, "oci:DIR:tag", outdir, opts) leaves
// OUTDIR/rootfs.ext4, OUTDIR/image.json and, when asked, OUTDIR/kernel and
// OUTDIR/initrd. A daemon that needs only part of it calls the phases:
//
//   - [Fetch] resolves a source, picks the platform and returns the
//     manifest, the config and one opener per layer. Sources: a registry
//     reference ("docker.io/library/debian:bookworm", credentials from the
//     docker config), "oci:DIR[:TAG]" (an OCI image layout) and
//     "docker-archive:FILE[:TAG]" (docker save). Every layer's uncompressed tar
//     is checked against its diff ID from the config, and blobs against
//     their digest, in the same pass that reads them: a mismatch or a
//     truncated stream is [ErrDigestMismatch] or io.ErrUnexpectedEOF
//     naming the layer, never a partial image.
//   - [BuildExt4] (or [BuildExt4File], into a file the caller opened)
//     formats an image of the given size and applies the layers in
//     order as tar streams (without a size: once, into a sparse image at
//     the ceiling, then cut to the content plus [AutoHeadroomDiv] and
//     [AutoHeadroomMin]; [ScanLayer] and [EstimateSize] remain for
//     callers who want an estimate before pulling): whiteouts and opaque directories, owners,
//     modes, times, xattrs (security.capability), hardlinks, symlinks,
//     device nodes, fifos and sparse files. Layer paths are resolved
//     inside the image, never on the host: "../../etc/x" or a symlink
//     chain lands inside the image root or is refused.
//   - [Finalize] runs [FinalizeStep]s in the build's session (one commit):
//     [InjectGuestAgents] installs the banger guest assets of package
//     guestassets (the network bootstrap, the vsock agent, what starts
//     them for the image's init system: systemd units, sysv-rc or OpenRC
//     scripts and links, or busybox inittab entries; the vsock modules
//     list), all root-owned, for the init [DetectInit] finds or
//     [InjectOptions].Init names (Pull records it in image.json);
//     [ApplyOwnership] sets recorded owners and modes ([OwnershipTable],
//     from [OwnershipFromLayers]) on an image built elsewhere, such as by
//     `mkfs.ext4 -d` from a rootless unpack. [DefaultFinalize] composes
//     the usual ones; [InjectGuestAgentsFile] runs the injection on an
//     image file in a session of its own.
//   - [StageBootArtifacts] publishes the finished image into OUTDIR under
//     the OUTDIR lock: kernel and initrd copied out of the image's /boot
//     ([FindBootArtifacts]) when asked, the image renamed to rootfs.ext4,
//     image.json ([ImageMetadata]) written last, so its presence marks a
//     complete pull.
//
// # Guarantees
//
// A source is hostile until proven otherwise. Nothing is written outside
// OUTDIR (and the temporary image beside its final name); OUTDIR's
// entries are never opened through a symlink; a crash at any point
// leaves rootfs.ext4 the old image or the new one; one pull at a time
// publishes into an OUTDIR ([ErrOutdirBusy]). Documents are capped
// ([MaxManifestBytes], [MaxConfigBytes], [ErrTooLarge]), zstd windows too
// ([MaxZstdWindow]), paths at [MaxPathBytes], an estimated size at
// [DefaultMaxAutoSize] ([ErrTooBig]); every other limit and what happens
// past it is in the README's "Hostile input" table.
//
// PullOptions.Progress (and BuildOptions.Progress) reports bytes per layer
// and the build's entries as they happen, for a daemon's own display;
// PullOptions.Insecure allows plain HTTP or unverified TLS for the
// source's registry host only.
//
// The command-line tool cmd/imagepull is a thin layer over this package:
// `imagepull pull`, `imagepull inject` and `imagepull apply-ownership`.
package imagepull
