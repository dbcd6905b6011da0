// Package imagepull turns container images into ext4 root filesystems for
// banger microVMs. This part of it is the finalize phase that runs on the
// built image in one ext4edit session (one commit, by the caller's Close):
//
//   - ApplyOwnership sets the owners and modes recorded in the layers'
//     tar headers (OwnershipFromLayers) on an image built elsewhere, such
//     as by `mkfs.ext4 -d` from a rootless unpack;
//   - InjectGuestAgents installs the guest assets of package guestassets
//     (network bootstrap, vsock agent, their systemd units, enabled).
//
// Finalize, DefaultFinalize and the FinalizeStep constructors compose them;
// the imagepull command (cmd/imagepull) exposes both on the command line.
package imagepull
